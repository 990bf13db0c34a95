"""Helpers of the outbox tests: real SMTP servers on 127.0.0.1, the sample mails, the pipeline.

Nothing here mocks SMTP: `SmtpServer` is aiosmtpd on loopback, with a handler that can defer,
refuse or delay; `Blackhole` is a plain socket that accepts connections and never greets, so a
client waits for the greeting (a deterministic place to kill a sender).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from patchbot.config.load import load_config
from patchbot.config.records import Config
from patchbot.demo.run import free_port, smtp_server  # noqa: F401 - the tests use it from here
from patchbot.series.intake import take_in
from patchbot.service.pipeline import STAGES, Context, run_pending
from patchbot.demo.sample import SAMPLE_MAILS, build_sample_repo, write_sample_config
from patchbot.testing.sandbox import sandbox_available
from patchbot.sources import RawMail
from patchbot.sources.files import source_for
from patchbot.store.database import Store
from patchbot.testing.run import clean_up_after_crash, secrets_of

LIST = "aur-dev@lists.archlinux.org"
BOT = "patchbot@patchbot.example.org"
BOT_DOMAIN = "patchbot.example.org"

# The sample's mails that open a tested series version (cover letter or single patch), in list
# order, with the author and what the reply must say.
SERIES_THREADS = {
    "<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>": ("Kevin Morris", "kevin@example.org"),
    "<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>": ("Frédéric Mangano", "fred@example.org"),
    "<cover.1588755600.git.filipe.lains@archlinux.org>": ("Filipe Laíns", "filipe@example.org"),
    "<1dcc13861481ed48c66909df6f226e1b5ef92b4a.1588842000.git.eli.schwartz@archlinux.org>": ("Eli Schwartz", "eli@example.org"),
    "<cover.1589014800.git.filipe.lains@archlinux.org>": ("Filipe Laíns", "filipe@example.org"),
}
V1_COVER = "<cover.1588755600.git.filipe.lains@archlinux.org>"
V2_COVER = "<cover.1589014800.git.filipe.lains@archlinux.org>"
REVIEW = "<20200506140000.GA2817@lukas-laptop.archlinux.org>"
RETEST = "<20200507110000.GB3012@lukas-laptop.archlinux.org>"

@pytest.fixture(scope="module")
def aurweb_repo(tmp_path_factory) -> Path:
    """The sample project's repository, once per test module that imports this fixture (its
    suites are real: they need the sandbox). Not in a conftest.py: other folders import theirs
    as `conftest`."""
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "aurweb")


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def message_id_of(data: bytes) -> str:
    return str(parse(data)["Message-ID"]).strip()


def sample_mails(commands: bool = False) -> list[RawMail]:
    """The sample aur-dev mails, in list order, as the list delivers them; without the
    maintainer's "patchbot: retest" unless asked (its answers are tested in test_end_to_end.py)."""
    mails = list(source_for(str(SAMPLE_MAILS)).mails())
    return mails if commands else [raw for raw in mails if message_id_of(raw.data) != RETEST]


def split_before_v2(mails: list[RawMail]) -> tuple[list[RawMail], list[RawMail]]:
    """The mails up to v2 of the suggest series, and v2's four mails."""
    index = next(i for i, raw in enumerate(mails) if message_id_of(raw.data) == V2_COVER)
    return mails[:index], mails[index:]


# -- SMTP servers -----------------------------------------------------------------------------


class Handler:
    """An aiosmtpd handler that keeps what it accepts and can defer, refuse or delay.

    `fail_data`: the first N DATA commands of each Message-ID get `fail_reply`.
    `refuse`: envelope recipients answered with `refuse_reply` at RCPT.
    `hold_for_sessions`: DATA is not answered until that many SMTP sessions have been seen
    (at most `hold_timeout` seconds): a way to have two senders in flight at once.
    """

    def __init__(self, fail_data: int = 0, fail_reply: str = "451 4.3.0 Try again later",
                 refuse: tuple[str, ...] = (), refuse_reply: str = "550 5.1.1 No such user here",
                 hold_for_sessions: int = 0, hold_timeout: float = 10.0) -> None:
        self.fail_data, self.fail_reply = fail_data, fail_reply
        self.refuse, self.refuse_reply = {address.lower() for address in refuse}, refuse_reply
        self.hold_for_sessions, self.hold_timeout = hold_for_sessions, hold_timeout
        self.sessions: list[object] = []
        self.messages: list[tuple[str, tuple[str, ...], bytes]] = []  # accepted, in order
        self.data_attempts: Counter[str] = Counter()  # DATA commands, by Message-ID
        self.mail_commands = 0
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_commands += 1
            if not any(seen is session for seen in self.sessions):
                self.sessions.append(session)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return self.refuse_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message_id = message_id_of(envelope.content)
        with self.lock:
            self.data_attempts[message_id] += 1
            attempt = self.data_attempts[message_id]
        deadline = time.monotonic() + self.hold_timeout
        while len(self.sessions) < self.hold_for_sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if attempt <= self.fail_data:
            return self.fail_reply
        with self.lock:
            self.messages.append((envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [message_id_of(data) for _, _, data in self.messages]


@contextmanager
def relay(handler, smtputf8: bool, port: int | None = None) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 that offers SMTPUTF8 (RFC 6531) or not; yields its port."""
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (socket.timeout, OSError):
                continue
            self.connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.connections:
            connection.close()
        self._socket.close()


# -- configuration, pipeline, CLI -------------------------------------------------------------


def write_config(folder: Path, repo: Path, port: int, db: Path | None = None, **smtp: object) -> Path:
    """The sample config for `repo` in `folder`, SMTP on 127.0.0.1:`port`, extra [smtp] keys."""
    path = write_sample_config(folder / "patchbot.toml", repo, folder / "work", db or folder / "patchbot.db", port)
    text = path.read_text()
    assert "\nretry_base = 1\n" in text, "the sample config's [smtp] section changed"
    smtp = {"retry_base": 0.1, **smtp}
    lines = "".join(f"{key} = {_toml(value)}\n" for key, value in smtp.items())
    path.write_text(text.replace("\nretry_base = 1\n", "\n" + lines))
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Bot:
    """patchbot in this process, on one config: feed mails as the list does, run the stages."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.store = Store(self.config.db)
        clean_up_after_crash(self.config, self.config.work_dir)

    def hidden(self) -> tuple[Path, ...]:
        return secrets_of(self.config, self.config.db)

    def run(self) -> dict[str, int]:
        return run_pending(self.store, self.config, self.config.work_dir, self.hidden())

    def run_without_sending(self) -> dict[str, int]:
        context = Context(self.store, self.config, self.config.work_dir, self.hidden())
        for name, stage in STAGES:
            if name != "send replies":
                stage(context)
        return context.counts

    def feed(self, mails: list[RawMail], send: bool = True) -> list[dict[str, int]]:
        """As demo.py does: one mail, then a pass of the pipeline."""
        counts = []
        for raw in mails:
            take_in(self.store, raw)
            counts.append(self.run() if send else self.run_without_sending())
        return counts

    def close(self) -> None:
        self.store.close()


def cli(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args],
                            capture_output=True, timeout=timeout)
    return result


def cli_ok(config: Path, *args: str) -> str:
    result = cli(config, *args)
    assert result.returncode == 0, (args, result.returncode, result.stderr.decode())
    return result.stdout.decode()


def write_mail_files(folder: Path, mails: list[RawMail], prefix: str) -> list[str]:
    """One file per mail (ingest sniffs a single raw mail), named in list order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, raw in enumerate(mails):
        path = folder / f"{prefix}-{index:02d}.eml"
        path.write_bytes(raw.data)
        paths.append(str(path))
    return paths


def outbox_rows(db: Path) -> list[dict] | None:
    """The outbox table, read-only (None while the database or the table is not there yet)."""
    if not db.exists():
        return None
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM outbox ORDER BY id").fetchall()
        return [dict(row) for row in rows]
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def query(db: Path, sql: str, *params: object) -> list[tuple]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def wait_for(condition, timeout: float, interval: float = 0.01, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
