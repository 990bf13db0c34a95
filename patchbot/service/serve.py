"""`patchbot serve`: take mail from the configured sources and run the pipeline as it arrives.

Why this is long: the daemon's lifecycle is one sequence (start every part and say ready only
once it listens, run, drain on SIGTERM, stop), and each part (sources, runners, outbox, events)
is a few lines of it. A new source is a module in sources/ plus its start-up class and one line
where the sources are listed (the function that builds `sources`) here.

Sources (LMTP, Maildir, IMAP) only store mail, each on its own thread, and wake the
scheduler. The scheduler, on the main thread, runs the pipeline's short stages in order (file
mail, request tests, handle commands, send replies) and hands claimed test requests to at most
`[serve] workers` worker threads. Everything a stage acts on is in the store first, under a
claim, so a restart resumes where a crash left off and answers nothing twice.

SIGTERM (and SIGINT) drain: the sources stop (the MTA keeps what it could not deliver), no new
test starts, running tests get `[serve] drain` seconds, due replies go out, exit 0. SIGHUP
reloads the configuration; an invalid one is logged and the running one kept.

A mail whose handling raises is set aside (see intake.set_aside) and the service goes on. The
machine's trouble (a full or read-only disk) is not the mail's: work is retried, the store
reopened, LMTP answers 451; a database that cannot be written for `[serve] store_grace`
seconds ends the service with EXIT_STORE_UNWRITABLE, for systemd to restart it.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from patchbot import PatchbotError
from patchbot.testing.apply import GitError
from patchbot.store.claims import CLAIMER
from patchbot.config.load import load_config
from patchbot.config.records import Config, ConfigError, SourcesConfig
from patchbot.service.pipeline import (
    STAGES, Context, Tested, claim_test, release_after_error, send_replies, test_requested,
)
from patchbot.store.connection import StoreError, is_machine_fault
from patchbot.store.database import Store
from patchbot.store.records import TestRequest
from patchbot.testing.errors import TestRunError
from patchbot.testing.run import clean_up_after_crash, secrets_of

log = logging.getLogger(__name__)

# The stages the scheduler runs itself; "run tests" is the workers'.
SCHEDULER_STAGES = tuple((name, stage) for name, stage in STAGES if name != "run tests")
MAX_SOURCE_BACKOFF_S = 300.0
MAX_WORKERS = 64  # the pool's size; [serve] workers (reloadable) bounds how many run
# The database could not be written for [serve] store_grace seconds (sysexits' EX_TEMPFAIL):
# systemd's Restart=on-failure starts a new process, with new connections.
EXIT_STORE_UNWRITABLE = os.EX_TEMPFAIL
STORE_PROBE_S = 5.0  # while the database cannot be written, a write is tried this often


@dataclass(frozen=True)
class Settings:
    """What a reload may change: the configuration and what follows from it."""

    config: Config
    work: Path
    hidden: tuple[Path, ...]


class Poller(Protocol):
    """A source polled for new mail: Maildir, IMAP."""

    def poll_once(self, store: Store) -> int: ...  # mails newly stored


class RunningSource(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PolledSource:
    """Polls one source on its own thread, wakes the scheduler when it stored mail, and backs
    off (doubling, at most five minutes) while the source fails."""

    def __init__(self, name: str, poller: Poller, interval_s: float, db_path: Path, wake: Callable[[], None]):
        self.name, self.poller, self.interval_s, self.db_path, self.wake = name, poller, interval_s, db_path, wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)
        close = getattr(self.poller, "close", None)
        if close is not None:
            close()

    def _run(self) -> None:
        store = None
        failures = 0
        while not self._stopping.is_set():
            try:
                store = store or Store(self.db_path)
                if self.poller.poll_once(store):
                    self.wake()
                failures = 0
            except Exception as error:  # noqa: BLE001 - a source's trouble must not end the service
                failures += 1
                log.error("source %s: %s (attempt %d)", self.name, error, failures)
            delay = self.interval_s if not failures else min(self.interval_s * 2 ** failures, MAX_SOURCE_BACKOFF_S)
            self._stopping.wait(delay)
        if store is not None:
            store.close()


class StoreHealth:
    """Since when the database could not be written, as every thread that writes reports it;
    the scheduler ends the service once that lasts longer than [serve] store_grace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None  # time.monotonic() of the first failed write

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                log.error("store: the database cannot be written: %s: %s; retrying", type(error).__name__, error)

    def wrote(self) -> None:
        with self._lock:
            if self._since is not None:
                log.warning("store: the database can be written again (after %.0f s)", time.monotonic() - self._since)
                self._since = None

    def unwritable_for(self) -> float | None:
        """Seconds since the first failed write, None while writes succeed."""
        since = self._since
        return None if since is None else time.monotonic() - since


class LmtpSource:
    """The LMTP server (aiosmtpd runs it on a thread of its own)."""

    def __init__(self, settings, db_path: Path, wake: Callable[[], None], health: StoreHealth):
        from patchbot.sources.lmtp import LmtpController, LmtpDelivery, LmtpSocketController

        def stored() -> None:
            health.wrote()
            wake()

        def not_stored(error: BaseException) -> None:
            if is_machine_fault(error):
                health.failed(error)
                wake()  # the scheduler probes the store and keeps the time

        delivery = LmtpDelivery(db_path, on_stored=stored, on_trouble=not_stored)
        self.socket = settings.socket
        if settings.socket is not None:
            self.name = f"lmtp unix:{settings.socket}"
            self._controller = LmtpSocketController(delivery, unix_socket=str(settings.socket))
        else:
            self.name = f"lmtp {settings.host}:{settings.port}"
            self._controller = LmtpController(delivery, hostname=settings.host, port=settings.port)

    def start(self) -> None:
        if self.socket is not None:
            _remove_stale_socket(self.socket)
        try:
            self._controller.start()
        except BaseException:
            # aiosmtpd leaves the loop of a server that could not bind open; left to the garbage
            # collector at exit, it printed a traceback whenever its pipe was collected first.
            self._controller.stop(no_assert=True)
            self._controller.loop.close()
            raise
        if self.socket is not None:
            # Who may deliver is decided by the socket's folder (patchbot:postfix 0750).
            os.chmod(self.socket, 0o666)

    def stop(self) -> None:
        if not self._controller.loop.is_closed():
            self._controller.stop()


def _remove_stale_socket(path: Path) -> None:
    """A socket file a crash left behind would stop the bind; a live server keeps its own."""
    import socket as sockets
    import stat

    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise PatchbotError(f"{path} exists and is not a socket: not replacing it")
    except FileNotFoundError:
        return
    with sockets.socket(sockets.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise PatchbotError(f"{path}: another server is listening on it")


def sources_of(config: SourcesConfig, db_path: Path, wake: Callable[[], None], health: StoreHealth) -> list[RunningSource]:
    sources: list[RunningSource] = []
    if config.lmtp is not None:
        sources.append(LmtpSource(config.lmtp, db_path, wake, health))
    if config.maildir is not None:
        from patchbot.sources.maildir import MaildirWatcher

        sources.append(PolledSource(f"maildir {config.maildir.path}", MaildirWatcher(config.maildir),
                                    config.maildir.poll_s, db_path, wake))
    if config.imap is not None:
        from patchbot.sources.imap import ImapPoller

        imap = config.imap
        sources.append(PolledSource(f"imap {imap.username}@{imap.host}/{imap.folder}", ImapPoller(imap),
                                    imap.poll_s, db_path, wake))
    return sources


class EventLog(logging.Handler):
    """Keeps the warnings and errors logged on any thread until the scheduler stores them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.pending: deque[tuple[datetime, str, str]] = deque(maxlen=1000)

    def emit(self, record: logging.LogRecord) -> None:
        self.pending.append((datetime.fromtimestamp(record.created, timezone.utc), record.levelname.lower(),
                             record.getMessage()))

    def take(self) -> list[tuple[datetime, str, str]]:
        taken = []
        while self.pending:
            taken.append(self.pending.popleft())
        return taken


class Service:
    """One `patchbot serve` process."""

    def __init__(self, config_path: Path | None, db_path: Path, settings: Settings):
        self.config_path, self.db_path, self.settings = config_path, db_path, settings
        self.store = Store(db_path)
        self._wake = threading.Event()
        self._stopping = False
        self._reload = False
        self._running: dict[Future, TestRequest] = {}
        self._pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="worker")
        self._local = threading.local()
        self._events = EventLog()
        self._sources: list[RunningSource] = []
        self._clean = False  # leftovers of a crash removed
        self._clean_error = ""
        self._health = StoreHealth()
        self._stage_errors: dict[str, str] = {}  # the error last logged per stage

    # -- signals ------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def _on_stop_signal(self, number, frame) -> None:
        log.info("serve: %s: draining", signal.Signals(number).name)
        self._stopping = True
        self._wake.set()

    def _on_reload_signal(self, number, frame) -> None:
        self._reload = True
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        logging.getLogger("patchbot").addHandler(self._events)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        self._sources = sources_of(self.settings.config.sources, self.db_path, self.wake, self._health)
        try:
            for source in self._sources:
                try:
                    source.start()
                except (OSError, RuntimeError) as error:
                    raise PatchbotError(f"{source.name}: cannot start: {error}") from None
                log.info("serve: listening: %s", source.name)
            if not self._sources:
                log.warning("serve: no [sources] configured: only mail already stored will be handled")
            self._note("serving")
            log.info("serve: started as %s, %d workers", CLAIMER, self.settings.config.serve.workers)
            served = self._serve()
        finally:
            self._stop_sources()
        if served == EXIT_STORE_UNWRITABLE:
            return self._give_up()
        self._drain()
        self._note("stopped")
        logging.getLogger("patchbot").removeHandler(self._events)
        return 0

    def _serve(self) -> int:
        beat = 0.0
        while not self._stopping:
            if self._reload:
                self._reload = False
                self._reload_config()
            self._collect_finished()
            if self._health.unwritable_for() is None:
                self._run_stages()
                self._dispatch_tests()
            if self._health.unwritable_for() is not None or time.monotonic() - beat >= self._beat_s():
                self._note("serving")  # while the store cannot be written, this is the probe
                beat = time.monotonic()
            unwritable = self._health.unwritable_for()
            grace = self.settings.config.serve.store_grace_s
            if unwritable is not None and unwritable >= grace:
                log.critical("serve: the database could not be written for %.0f s ([serve] store_grace): exiting with %d"
                             " for a restart", unwritable, EXIT_STORE_UNWRITABLE)
                return EXIT_STORE_UNWRITABLE
            timeout = min(self.settings.config.serve.poll_s, self._beat_s())
            if unwritable is not None:
                timeout = min(timeout, STORE_PROBE_S, grace - unwritable)
            self._wake.wait(timeout)
            self._wake.clear()
        return 0

    def _give_up(self) -> int:
        """The store could not be written for too long: no drain (nothing could be kept), exit
        at once; running tests run again after the restart, their claims' holder being dead."""
        logging.getLogger("patchbot").removeHandler(self._events)
        if self._running:
            logging.shutdown()
            os._exit(EXIT_STORE_UNWRITABLE)  # the workers' threads would keep the interpreter alive
        self._pool.shutdown()
        return EXIT_STORE_UNWRITABLE

    def _beat_s(self) -> float:
        return min(self.settings.config.serve.lease_s / 3, 60.0)

    def _run_stages(self) -> None:
        settings = self.settings
        context = Context(self.store, settings.config, settings.work, settings.hidden)
        for name, stage in SCHEDULER_STAGES:
            try:
                stage(context)
            except Exception as error:  # noqa: BLE001 - no stage's trouble may end the service
                if is_machine_fault(error):
                    self._health.failed(error)
                    return  # the next stages would meet the same disk; the store is probed
                if self._stage_errors.get(name) != str(error):  # once, not at every pass
                    log.error("serve: stage %s failed, will try again: %s", name, _error_text(error))
                    self._stage_errors[name] = str(error)
            else:
                self._stage_errors.pop(name, None)
        for name, number in sorted(context.counts.items()):
            log.debug("serve: %s: %d", name, number)

    def _dispatch_tests(self) -> None:
        if not self._cleaned_up():
            return
        while len(self._running) < self.settings.config.serve.workers:
            try:
                request = claim_test(self.store, self.settings.config)
            except (StoreError, sqlite3.Error) as error:
                if is_machine_fault(error):
                    self._health.failed(error)
                else:
                    log.error("serve: cannot claim a test: %s", error)
                return
            if request is None:
                return
            future = self._pool.submit(self._test, self.settings, request)
            self._running[future] = request

    def _cleaned_up(self) -> bool:
        """Before the first test: remove what a crashed run left (it needs the repository)."""
        if self._clean:
            return True
        try:
            if clean_up_after_crash(self.settings.config, self.settings.work):
                log.info("serve: removed worktrees left by an earlier crash")
        except (GitError, TestRunError) as error:
            if str(error) != self._clean_error:  # once, not at every pass
                log.warning("serve: tests wait: cannot prepare the repository yet: %s", error)
                self._clean_error = str(error)
            return False
        self._clean = True
        return True

    def _test(self, settings: Settings, request: TestRequest) -> Tested:
        """On a worker thread: SQLite connections stay with the thread that opened them."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.db_path)
        try:
            return test_requested(store, settings.config, settings.work, settings.hidden, request)
        finally:
            self.wake()  # its reply is due now

    def _collect_finished(self) -> None:
        """A worker whose run raised (any exception: its thread ends with it) lets go of its
        request, which goes back to the queue; it never stays 'running'."""
        for future in [future for future in self._running if future.done()]:
            request = self._running.pop(future)
            error = future.exception()
            if error is None:
                continue
            log.error("serve: test of series %d failed: %s", request.series_id, _error_text(error))
            if is_machine_fault(error):
                self._health.failed(error)
            release_after_error(self.store, request, error)

    def _note(self, state: str) -> None:
        """Renew the leases of running tests, note this service and store what it logged.

        Only the leases of tests a worker still runs are renewed: a claim left behind (its
        release failed on a full disk) lapses, and the request is taken again."""
        lease = timedelta(seconds=self.settings.config.serve.lease_s)
        events = self._events.take()
        try:
            with self.store.transaction():
                self.store.renew_test_claims(CLAIMER, datetime.now(timezone.utc) + lease,
                                             [request.id for request in self._running.values()])
                self.store.note_service(CLAIMER, state, [source.name for source in self._sources])
                self.store.add_service_events(events)
        except (StoreError, sqlite3.Error, OSError) as error:
            self._events.pending.extendleft(reversed(events))  # kept for the next note
            if is_machine_fault(error):
                self._health.failed(error)
            else:
                log.error("serve: cannot note the service in the store: %s", error)
        else:
            self._health.wrote()

    def _reload_config(self) -> None:
        try:
            config = load_config(self.config_path)
        except ConfigError as error:
            log.error("serve: SIGHUP: keeping the running configuration: %s", error)
            return
        if config.sources != self.settings.config.sources:
            log.warning("serve: SIGHUP: [sources] changed; restart patchbot serve to apply that part")
        self.settings = Settings(config, self.settings.work, secrets_of(config, self.db_path))
        log.info("serve: SIGHUP: configuration reloaded from %s", self.config_path)

    # -- stopping -------------------------------------------------------------------------------

    def _stop_sources(self) -> None:
        for source in self._sources:
            try:
                source.stop()
            except Exception as error:  # noqa: BLE001 - stopping the others matters more
                log.error("serve: stopping %s: %s", source.name, error)

    def _drain(self) -> None:
        self._note("draining")
        deadline = time.monotonic() + self.settings.config.serve.drain_s
        if self._running:
            log.info("serve: waiting for %d running tests (at most %.0f s)", len(self._running),
                     self.settings.config.serve.drain_s)
        while self._running and time.monotonic() < deadline:
            wait(list(self._running), timeout=min(self._beat_s(), deadline - time.monotonic()),
                 return_when=FIRST_COMPLETED)
            self._collect_finished()
            self._note("draining")
        self._send_due()
        if self._running:
            left = len(self._running)
            log.warning("serve: drain time over: %d tests left unfinished; they run again at the next start", left)
            self._note("stopped")
            logging.shutdown()
            os._exit(0)  # the workers' threads would keep the interpreter alive
        self._pool.shutdown()

    def _send_due(self) -> None:
        settings = self.settings
        context = Context(self.store, settings.config, settings.work, settings.hidden)
        try:
            send_replies(context)
        except (PatchbotError, sqlite3.Error, OSError) as error:
            log.error("serve: sending replies: %s", error)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class LogLineFormatter(logging.Formatter):
    """One line per event: a multi-line message or traceback is folded onto its line.

    Under systemd (JOURNAL_STREAM set) each line starts with its syslog priority, <3> for an
    error, which journald turns into the record's level, and carries no timestamp of its own."""

    PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self, journal: bool):
        super().__init__("%(name)s: %(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\n", " | ")
        return f"<{self.PRIORITIES.get(record.levelno, 6)}>{line}" if self.journal else line


def use_service_log_lines() -> None:
    # aiosmtpd logs every LMTP command at INFO; our own line per stored mail says what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(LogLineFormatter(journal="JOURNAL_STREAM" in os.environ))


def serve(config_path: Path | None, db_path: Path, config: Config, work: Path) -> int:
    return Service(config_path, db_path, Settings(config, work, secrets_of(config, db_path))).run()
