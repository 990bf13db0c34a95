"""Keep every mail, series and reference in one SQLite file; the only module that speaks SQL.

The schema is versioned: MIGRATIONS[n] takes a database from version n to n+1, and opening
a store applies whatever is missing, in one transaction each.
"""

from __future__ import annotations

from patchbot import PatchbotError

import errno
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from patchbot.mail.diff import FileChange
from patchbot.mail.trailers import Trailer
from patchbot.pulls import PullRequest
from patchbot.results import SuiteResult
from patchbot.suite_health import Breakage, BreakageKind
from patchbot.testreports import Outcome, TestCase, TestReport

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: mails, series, their patches, and every Message-ID seen in a series' thread.
    """
    CREATE TABLE mails (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        synthetic_id INTEGER NOT NULL,
        raw BLOB NOT NULL,
        origin TEXT NOT NULL,
        received_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'new',      -- new | filed | rejected | failed
        reason TEXT,                             -- why rejected or failed
        kind TEXT,                               -- patch | cover | pull | reply | other
        kind_rule TEXT,
        subject TEXT,
        title TEXT,
        sender TEXT,
        sender_name TEXT,
        date TEXT,
        version INTEGER,
        counter INTEGER,
        total INTEGER,
        in_reply_to TEXT,
        details TEXT,                            -- JSON: files, trailers, pull_url, has_diff
        series_id INTEGER REFERENCES series(id)
    );
    CREATE INDEX mails_status ON mails(status);
    CREATE INDEX mails_series ON mails(series_id);
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        normalised_title TEXT NOT NULL,
        author TEXT NOT NULL,
        author_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        total INTEGER,
        cover_mail_id INTEGER REFERENCES mails(id),
        date TEXT NOT NULL,
        supersedes_id INTEGER REFERENCES series(id),
        obsolete INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX series_author ON series(author, version);
    CREATE TABLE series_patches (
        series_id INTEGER NOT NULL REFERENCES series(id),
        number INTEGER NOT NULL,
        mail_id INTEGER NOT NULL REFERENCES mails(id),
        inherited INTEGER NOT NULL DEFAULT 0,   -- carried over from the version re-rolled
        PRIMARY KEY (series_id, number)
    );
    CREATE TABLE thread_refs (
        message_id TEXT PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id)
    );
    """,
    # 1 -> 2: test runs of series, and suite results at base commits (reused across series).
    """
    CREATE TABLE test_runs (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id),
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        summary TEXT NOT NULL,                   -- JSON: what `patchbot test --json` prints
        tip_results TEXT NOT NULL                -- JSON: per-suite results at the series' head
    );
    CREATE INDEX test_runs_series ON test_runs(series_id);
    CREATE TABLE base_results (
        base_commit TEXT NOT NULL,
        suite TEXT NOT NULL,
        suite_key TEXT NOT NULL,                 -- hash of the suite's configuration
        result TEXT NOT NULL,                    -- JSON: one suite result
        PRIMARY KEY (base_commit, suite, suite_key)
    );
    """,
    # 2 -> 3: requests to test a series (the first is automatic, retests add more) and the
    # outbox of replies, each stored under a unique key before any attempt to send it.
    """
    CREATE TABLE test_requests (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id),
        number INTEGER NOT NULL,                 -- 1 for the automatic test, then each retest
        base_ref TEXT,                           -- a base asked for, or NULL
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        done_at TEXT,
        test_run_id INTEGER REFERENCES test_runs(id),
        UNIQUE (series_id, number)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,                -- series, version, kind, request: one reply each
        series_id INTEGER REFERENCES series(id),
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,                -- JSON list of envelope recipients
        data BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
    """,
    # 3 -> 4: a sender claims the replies it is sending, so that two passes at once (cron
    # overlapping a slow run) never send one twice; a dead sender's claims lapse.
    """
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claimed_until TEXT
    """,
    # 4 -> 5: maintainers' commands. A series can be ignored; every reply in a series' thread is
    # read for commands once (a row here, claimed before acting, its outcome stored after); the
    # notices given once (a refusal per thread and sender, a rate-limit note per sender and hour).
    # Replies kept before commands existed count as read: an old "patchbot: apply" must not act.
    """
    ALTER TABLE series ADD COLUMN ignored INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE test_requests ADD COLUMN suite TEXT;   -- "patchbot: retest SUITE": only that suite
    CREATE TABLE command_mails (
        mail_id INTEGER PRIMARY KEY REFERENCES mails(id),
        series_id INTEGER REFERENCES series(id),
        sender TEXT NOT NULL,
        commands INTEGER NOT NULL,               -- command lines found: the rate limit counts them
        claimed_by TEXT,                         -- host:pid handling it
        handled_at TEXT NOT NULL,
        outcome TEXT                             -- JSON: what was done, NULL while being handled
    );
    CREATE INDEX command_mails_sender ON command_mails(sender, handled_at);
    CREATE TABLE command_notices (
        scope TEXT NOT NULL,                     -- series-N (a thread) or an hour
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,                      -- refused | rate-limit
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, sender, kind)
    );
    INSERT INTO command_mails (mail_id, series_id, sender, commands, handled_at, outcome)
        SELECT id, series_id, coalesce(sender, ''), 0, received_at, '"kept before commands were read"'
        FROM mails WHERE status = 'filed' AND kind NOT IN ('patch', 'cover', 'pull') AND series_id IS NOT NULL
    """,
    # 5 -> 6: the service. A test request is a job: a worker claims it under a lease it renews,
    # a claim of a dead worker lapses, and a run that could not start waits before the next try.
    # Services note themselves (for `patchbot status`) and the warnings and errors they logged.
    """
    ALTER TABLE test_requests ADD COLUMN claimed_by TEXT;
    ALTER TABLE test_requests ADD COLUMN claimed_until TEXT;
    ALTER TABLE test_requests ADD COLUMN started_at TEXT;
    ALTER TABLE test_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE test_requests ADD COLUMN last_error TEXT;
    ALTER TABLE test_requests ADD COLUMN next_attempt_at TEXT;
    CREATE INDEX test_requests_open ON test_requests(done_at);
    CREATE TABLE services (
        claimer TEXT PRIMARY KEY,                -- host:pid:start of a `patchbot serve`
        started_at TEXT NOT NULL,
        beat_at TEXT NOT NULL,                   -- renewed while it runs
        state TEXT NOT NULL,                     -- serving | draining | stopped
        sources TEXT NOT NULL                    -- what it listens to, for status
    );
    CREATE TABLE service_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
    );
    -- From now on a version superseded before its test is answered with a note. Those
    -- superseded before this schema were deliberately left alone, and stay so.
    INSERT INTO test_requests (series_id, number, reason, created_at, done_at)
        SELECT id, 1, 'superseded before it was tested (kept from schema 5)',
               strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')
        FROM series WHERE obsolete = 1 AND id NOT IN (SELECT series_id FROM test_requests)
    """,
    # 6 -> 7: a DKIM-signed command acts once per signature (its b= value), whatever Message-ID
    # a copy of it is re-sent under.
    """
    CREATE TABLE command_signatures (
        signature TEXT PRIMARY KEY,              -- b= of the signature that vouched for the mail
        mail_id INTEGER NOT NULL REFERENCES mails(id),
        acted_at TEXT NOT NULL
    )
    """,
    # 7 -> 8: a mail whose handling raised is set aside (status 'failed') with the stage that
    # raised and when, until `patchbot requeue` puts it back. Mails marked failed before are
    # filed again: a full disk marked some, and nothing ever retried them.
    """
    ALTER TABLE mails ADD COLUMN failed_stage TEXT;
    ALTER TABLE mails ADD COLUMN failed_at TEXT;
    UPDATE mails SET status = 'new', reason = NULL WHERE status = 'failed' AND kind IS NULL
    """,
    # 8 -> 9: `patchbot: trust-deps`: a maintainer lets the environment be built with network
    # from exactly these dependency files (their digest) of this series version.
    """
    CREATE TABLE trusted_dependencies (
        series_id INTEGER NOT NULL REFERENCES series(id),
        environment TEXT NOT NULL,
        files_digest TEXT NOT NULL,              -- environments.files_digest of the key files trusted
        trusted_by TEXT NOT NULL,
        trusted_at TEXT NOT NULL,
        PRIMARY KEY (series_id, environment, files_digest)
    )
    """,
    # 9 -> 10: what a series' own mails, its author's or a maintainer's replies say it is based
    # on or depends on (Based-on:, Depends-on:), newest mail first; a stranger's are not kept.
    """
    CREATE TABLE series_hints (
        series_id INTEGER NOT NULL REFERENCES series(id),
        mail_id INTEGER NOT NULL REFERENCES mails(id),
        name TEXT NOT NULL,                      -- "Based-on" or "Depends-on"
        value TEXT NOT NULL,
        PRIMARY KEY (series_id, mail_id, name, value)
    )
    """,
    # 10 -> 11: series whose author's mails carry a DKIM signature of the author's domain:
    # only mails so signed (or a maintainer's) may add to, re-roll or steer them (series.py).
    """
    CREATE TABLE signed_series (
        series_id INTEGER PRIMARY KEY REFERENCES series(id),
        signed_at TEXT NOT NULL
    )
    """,
    # 11 -> 12: this database's own random id, made once: a reply's Message-ID is derived from
    # it and the reply's key, so a resend reuses its id and two databases (staging and
    # production, a reset) never send the same one (issue 13; archives dropped one as a duplicate).
    """
    CREATE TABLE instance (
        only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
        id TEXT NOT NULL
    );
    INSERT INTO instance (only_row, id) VALUES (1, lower(hex(randomblob(16))))
    """,
    # 12 -> 13: a series is a pull request's (kind 'pull') or patches'; a pull's URL, ref, and the
    # tip and base commits its mail announced are what its test fetches and checks (pulls.py).
    """
    ALTER TABLE series ADD COLUMN kind TEXT NOT NULL DEFAULT 'patch';
    ALTER TABLE series ADD COLUMN pull_url TEXT;
    ALTER TABLE series ADD COLUMN pull_ref TEXT;
    ALTER TABLE series ADD COLUMN pull_tip TEXT;
    ALTER TABLE series ADD COLUMN pull_base TEXT
    """,
    # 13 -> 14: a test request whose runs the machine kept failing (infrastructure retries spent,
    # issue 12 item 6) ends "given up": the list got one short reply, status keeps it as an error.
    """
    ALTER TABLE test_requests ADD COLUMN given_up_at TEXT
    """,
)


class StoreError(PatchbotError):
    """The database cannot be opened or is not one of ours."""


# SQLite's primary result codes for trouble of the machine, not of what was being written:
# SQLITE_PERM, SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN,
# SQLITE_BUSY (another process held the lock past the timeout).
_MACHINE_SQLITE_CODES = {3, 7, 8, 10, 13, 14, 5}
_MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOMEM}


def is_machine_fault(error: BaseException) -> bool:
    """Whether an error is the machine's (a full or read-only disk, an I/O error, SQLite's memory), which
    passes once the machine recovers, rather than something a mail or its handling caused.

    Work that failed for the machine's reasons is retried, never set aside as poison: disk full
    once marked mails 'failed' for good."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        # A MemoryError is not counted: a mail built to exhaust memory would then hold up every
        # mail after it at each pass, where set aside it holds up nobody.
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            if code is not None:
                return code & 0xFF in _MACHINE_SQLITE_CODES
            return isinstance(error, sqlite3.OperationalError)
        if isinstance(error, OSError) and error.errno in _MACHINE_ERRNOS:
            return True
        error = error.__cause__ or error.__context__
    return False


@dataclass(frozen=True)
class NewMail:
    """A stored mail not yet parsed and filed."""

    id: int
    message_id: str
    raw: bytes
    origin: str
    received_at: datetime


@dataclass(frozen=True)
class FailedMail:
    """A mail set aside because its handling raised."""

    id: int
    message_id: str
    stage: str  # the pipeline stage that raised
    error: str  # exception type and message
    failed_at: datetime | None
    subject: str | None  # None: it was never filed
    sender: str | None


@dataclass(frozen=True)
class MailFacts:
    """What parsing found out about a mail, as the store keeps it."""

    kind: str
    kind_rule: str
    subject: str
    title: str
    sender: str
    sender_name: str
    date: datetime | None
    version: int | None
    counter: int | None
    total: int | None
    in_reply_to: str | None
    has_diff: bool
    files: tuple[FileChange, ...]
    trailers: tuple[Trailer, ...]
    pull_url: str | None
    message_id: str = ""
    auto_submitted: str | None = None
    bounce: bool = False


@dataclass(frozen=True)
class MailRecord:
    id: int
    message_id: str
    synthetic_id: bool
    origin: str
    received_at: datetime
    status: str
    reason: str | None
    facts: MailFacts | None
    series_id: int | None


@dataclass(frozen=True)
class PatchSlot:
    number: int
    mail_id: int
    message_id: str
    subject: str
    title: str
    inherited: bool
    version: int | None = None  # what the patch's own subject says (the series' version may differ)


@dataclass(frozen=True)
class SeriesRecord:
    id: int
    title: str
    normalised_title: str
    author: str
    author_name: str
    version: int
    total: int | None
    cover_mail_id: int | None
    cover_message_id: str | None
    date: datetime
    supersedes_id: int | None
    obsolete: bool
    patches: tuple[PatchSlot, ...]
    ignored: bool = False  # a maintainer said "patchbot: ignore": not tested, pending tests dropped
    based_on: tuple[str, ...] = ()  # Based-on:/Depends-on: values believed (series_hints), newest first
    kind: str = "patch"  # or "pull": a pull request, tested by fetching `pull` (pulls.py)
    pull: PullRequest | None = None

    @property
    def received(self) -> tuple[int, ...]:
        return tuple(slot.number for slot in self.patches)

    @property
    def complete(self) -> bool:
        """Every patch 1..total is here (patches beyond the total do not make it incomplete)."""
        return self.total is not None and set(range(1, self.total + 1)) <= set(self.received)

    @property
    def extra_patches(self) -> tuple[int, ...]:
        """Numbers beyond the announced total (`[PATCH 3/2]` sent after a 0/2 cover letter)."""
        return tuple(number for number in self.received if self.total is not None and number > self.total)

    @property
    def version_mismatches(self) -> tuple[PatchSlot, ...]:
        """Own patches whose subject names another version than the series (the cover's wins)."""
        return tuple(slot for slot in self.patches
                     if not slot.inherited and slot.version is not None and slot.version != self.version)

    def slot(self, number: int) -> PatchSlot | None:
        return next((slot for slot in self.patches if slot.number == number), None)


def default_db_path() -> Path:
    """$XDG_DATA_HOME/patchbot/patchbot.db, else ~/.local/share/patchbot/patchbot.db."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "patchbot" / "patchbot.db"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class Store:
    """One SQLite database file; methods are named for what they mean, not the SQL they run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = self._connect()
        self._depth = 0
        # A write failed for the machine's reasons: the next transaction starts on a new
        # connection. SQLite opens a file it may not write read-only and keeps it so after
        # the permissions are fixed (LMTP answered 451 for ever); after an I/O error or a
        # full disk a fresh connection is the documented way back.
        self._stale = False

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss, so "stored" means stored when we answer.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._db = db
            self._migrate()
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"cannot open the database {self.path}: {error}") from error
        return db

    def reopen(self) -> None:
        """Open a new connection in place of this one (after the machine's trouble); while
        that fails (StoreError), the old one stays for reading."""
        old = self._db
        try:
            self._connect()
        except StoreError:
            self._db = old
            raise
        try:
            old.close()
        except sqlite3.Error:
            pass  # a connection in trouble may not close cleanly; the new one is what counts
        self._stale = False

    def close(self) -> None:
        self._db.close()

    # -- schema ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this patchbot knows "
                f"({len(MIGRATIONS)}); upgrade patchbot"
            )
        for number in range(version, len(MIGRATIONS)):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """Group writes: committed together, or none. A nested one is a savepoint: its
        failure undoes only its own writes and leaves the outer transaction going.

        `durable=False` commits without waiting for the disk (synchronous=NORMAL under WAL):
        safe against a killed process, not against a power cut; for marks where a moment
        less between an event and its record matters more (a reply the server accepted)."""
        if self._depth:
            name = f"nested{self._depth}"
            self._db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                if self._db.in_transaction:  # else SQLite rolled back the whole transaction itself
                    self._db.execute(f"ROLLBACK TO {name}")
                raise
            finally:
                if self._db.in_transaction:
                    self._db.execute(f"RELEASE {name}")
                self._depth -= 1
            return
        if self._stale:
            self.reopen()
        if not durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._depth = 1
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except BaseException as error:
            # SQLite rolls back by itself when a COMMIT meets a full disk or an I/O error;
            # a ROLLBACK then would raise and hide the error that counts.
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    self._stale = True
            if is_machine_fault(error):
                self._stale = True
            raise
        finally:
            self._depth = 0
            if not durable and not self._stale:
                self._db.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def statements(self) -> Iterator[list[str]]:
        """Every SQL statement run inside the block, in order: tests and benchmarks bound the
        work of a step by counting them rather than by timing it."""
        seen: list[str] = []
        self._db.set_trace_callback(seen.append)
        try:
            yield seen
        finally:
            self._db.set_trace_callback(None)

    # -- mails ----------------------------------------------------------------------------

    def has_mail(self, message_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM mails WHERE message_id = ?", (message_id,)).fetchone() is not None

    def add_mail(self, message_id: str, synthetic_id: bool, raw: bytes, origin: str) -> int | None:
        """Keep a mail's bytes; None when a mail with this Message-ID is already kept."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO mails (message_id, synthetic_id, raw, origin, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (message_id, int(synthetic_id), raw, origin, _iso(datetime.now(timezone.utc))),
        )
        return cursor.lastrowid if cursor.rowcount else None

    def new_mails(self) -> list[NewMail]:
        """Mails kept but not yet filed, oldest first (what a crash left half done)."""
        rows = self._db.execute(
            "SELECT id, message_id, raw, origin, received_at FROM mails WHERE status = 'new' ORDER BY id"
        ).fetchall()
        return [NewMail(row[0], row[1], row[2], row[3], _moment(row[4])) for row in rows]

    def record_facts(self, mail_id: int, facts: MailFacts) -> None:
        details = {
            "has_diff": facts.has_diff,
            "pull_url": facts.pull_url,
            "files": [vars(change) for change in facts.files],
            "trailers": [[trailer.name, trailer.value] for trailer in facts.trailers],
            "auto_submitted": facts.auto_submitted,
            "bounce": facts.bounce,
        }
        self._db.execute(
            "UPDATE mails SET status = 'filed', kind = ?, kind_rule = ?, subject = ?, title = ?,"
            " sender = ?, sender_name = ?, date = ?, version = ?, counter = ?, total = ?,"
            " in_reply_to = ?, details = ? WHERE id = ?",
            (
                facts.kind, facts.kind_rule, facts.subject, facts.title, facts.sender,
                facts.sender_name, _iso(facts.date), facts.version, facts.counter, facts.total,
                facts.in_reply_to, json.dumps(details), mail_id,
            ),
        )

    def reject_mail(self, mail_id: int, status: str, reason: str) -> None:
        """Mark a kept mail as rejected (bad input), with the reason."""
        self._db.execute("UPDATE mails SET status = ?, reason = ? WHERE id = ?", (status, reason, mail_id))

    def set_mail_aside(self, mail_id: int, stage: str, error: str) -> None:
        """A mail whose handling raised (Mailman's shunt queue): kept as 'failed' with the stage
        and the error, and left alone until `requeue_mails` puts it back. A command mail's
        claim ends with the same error, so a restart does not take it for interrupted."""
        self._db.execute("UPDATE mails SET status = 'failed', reason = ?, failed_stage = ?, failed_at = ? WHERE id = ?",
                         (error, stage, _iso(datetime.now(timezone.utc)), mail_id))
        self._db.execute("UPDATE command_mails SET outcome = json_object('set aside', ?), claimed_by = NULL"
                         " WHERE mail_id = ? AND outcome IS NULL", (error, mail_id))

    def failed_mails(self) -> list[FailedMail]:
        rows = self._db.execute(
            "SELECT id, message_id, failed_stage, reason, failed_at, subject, sender FROM mails"
            " WHERE status = 'failed' ORDER BY id"
        ).fetchall()
        return [FailedMail(row[0], row[1], row[2] or "file mail", row[3] or "", _moment(row[4]), row[5], row[6])
                for row in rows]

    def requeue_mails(self, mail_ids: Sequence[int] | None = None) -> list[int]:
        """Put mails set aside back (all of them with None); returns those put back.

        One never filed is filed again; one filed is read for commands again. A command mail
        claimed before it failed is not acted on again (its commands may have been): it is
        treated as interrupted, and its acknowledgement says so."""
        with self.transaction():
            failed = [row[0] for row in self._db.execute("SELECT id FROM mails WHERE status = 'failed' ORDER BY id")]
            chosen = [mail_id for mail_id in failed if mail_ids is None or mail_id in set(mail_ids)]
            for mail_id in chosen:
                self._db.execute(
                    "UPDATE mails SET status = CASE WHEN kind IS NULL THEN 'new' ELSE 'filed' END, reason = NULL,"
                    " failed_stage = NULL, failed_at = NULL WHERE id = ?", (mail_id,))
                self._db.execute("UPDATE command_mails SET outcome = NULL, claimed_by = NULL"
                                 " WHERE mail_id = ? AND json_extract(outcome, '$.\"set aside\"') IS NOT NULL",
                                 (mail_id,))
        return chosen

    def attach_to_series(self, mail_id: int, series_id: int) -> None:
        self._db.execute("UPDATE mails SET series_id = ? WHERE id = ?", (series_id, mail_id))

    def mail(self, message_id: str) -> MailRecord | None:
        row = self._db.execute(f"SELECT {_MAIL_COLUMNS} FROM mails WHERE message_id = ?", (message_id,)).fetchone()
        return _mail_record(row) if row else None

    def mail_by_id(self, mail_id: int) -> MailRecord:
        return _mail_record(self._db.execute(f"SELECT {_MAIL_COLUMNS} FROM mails WHERE id = ?", (mail_id,)).fetchone())

    def raw_mail(self, mail_id: int) -> bytes:
        return self._db.execute("SELECT raw FROM mails WHERE id = ?", (mail_id,)).fetchone()[0]

    def count_mails(self) -> dict[str, int]:
        """How many mails per kind, and per status for those not filed."""
        counts: dict[str, int] = {}
        for kind, status, number in self._db.execute(
            "SELECT kind, status, count(*) FROM mails GROUP BY kind, status"
        ):
            key = kind if status == "filed" else status
            counts[key] = counts.get(key, 0) + number
        return counts

    # -- series ---------------------------------------------------------------------------

    def add_series(
        self, *, title: str, normalised_title: str, author: str, author_name: str,
        version: int, total: int | None, date: datetime,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO series (title, normalised_title, author, author_name, version, total, date)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (title, normalised_title, author, author_name, version, total, _iso(date)),
        )
        return cursor.lastrowid

    def update_series(
        self, series_id: int, *, title: str | None = None, normalised_title: str | None = None,
        total: int | None = None, date: datetime | None = None, cover_mail_id: int | None = None,
        version: int | None = None,
    ) -> None:
        """Set the given fields (None leaves a field as it is)."""
        self._db.execute(
            "UPDATE series SET title = coalesce(?, title), normalised_title = coalesce(?, normalised_title),"
            " total = coalesce(?, total), date = min(date, coalesce(?, date)),"
            " cover_mail_id = coalesce(?, cover_mail_id), version = coalesce(?, version) WHERE id = ?",
            (title, normalised_title, total, _iso(date), cover_mail_id, version, series_id),
        )

    def mark_series_signed(self, series_id: int) -> None:
        """A mail of the series' author verified (DKIM): from now on only such mails act as the author."""
        self._db.execute("INSERT OR IGNORE INTO signed_series (series_id, signed_at) VALUES (?, ?)",
                         (series_id, _iso(datetime.now(timezone.utc))))

    def series_signed(self, series_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM signed_series WHERE series_id = ?", (series_id,)).fetchone() is not None

    def put_patch(self, series_id: int, number: int, mail_id: int, inherited: bool = False) -> None:
        """Place a mail as patch `number` of a series, replacing an inherited one."""
        self._db.execute(
            "INSERT OR REPLACE INTO series_patches (series_id, number, mail_id, inherited) VALUES (?, ?, ?, ?)",
            (series_id, number, mail_id, int(inherited)),
        )

    def link_versions(self, series_id: int, supersedes_id: int) -> None:
        """Record that a series re-rolls another; the older one (and its ancestors) are obsolete."""
        self._db.execute("UPDATE series SET supersedes_id = ? WHERE id = ?", (supersedes_id, series_id))
        self._db.execute(
            "WITH RECURSIVE older(id) AS (SELECT ? UNION SELECT s.supersedes_id FROM series s"
            " JOIN older ON s.id = older.id WHERE s.supersedes_id IS NOT NULL)"
            " UPDATE series SET obsolete = 1 WHERE id IN (SELECT id FROM older)",
            (supersedes_id,),
        )

    def remember_thread_ids(self, series_id: int, message_ids: Sequence[str]) -> None:
        """Note ids seen in a series' thread; an id keeps the first series it was seen with."""
        # One statement whatever the count (json_each walks the list in order).
        self._db.execute(
            "INSERT OR IGNORE INTO thread_refs (message_id, series_id) SELECT value, ? FROM json_each(?) ORDER BY key",
            (series_id, json.dumps(list(message_ids))),
        )

    def claim_own_thread_id(self, series_id: int, message_id: str) -> None:
        """A patch's or cover letter's own Message-ID leads to the series it is in, whoever named
        the id first: a stranger's mail that references an id before its mail arrives (a guessed
        git send-email id) must not draw that thread's replies and commands to the stranger's series."""
        self._db.execute(
            "INSERT INTO thread_refs (message_id, series_id) VALUES (?, ?)"
            " ON CONFLICT (message_id) DO UPDATE SET series_id = excluded.series_id",
            (message_id, series_id),
        )

    def series_by_thread(self, message_ids: Sequence[str]) -> SeriesRecord | None:
        """The series of the first of these ids (closest first) that a series' thread holds."""
        # One query, not one per id: a mail may name many (message_ids_in caps a header's).
        row = self._db.execute(
            "SELECT t.series_id FROM json_each(?) AS ids JOIN thread_refs t ON t.message_id = ids.value"
            " ORDER BY ids.key LIMIT 1",
            (json.dumps(list(message_ids)),),
        ).fetchone()
        return self.series(row[0]) if row else None

    def series_along_thread(self, message_ids: Sequence[str]) -> list[tuple[str, SeriesRecord]]:
        """Every series these ids (closest first) lead to, each once, with the first id that led to it."""
        rows = self._db.execute(
            "SELECT ids.value, t.series_id FROM json_each(?) AS ids JOIN thread_refs t ON t.message_id = ids.value"
            " ORDER BY ids.key",
            (json.dumps(list(message_ids)),),
        ).fetchall()
        found: dict[int, str] = {}
        for message_id, series_id in rows:
            found.setdefault(series_id, message_id)
        return [(message_id, self.series(series_id)) for series_id, message_id in found.items()]

    def series(self, series_id: int) -> SeriesRecord | None:
        row = self._db.execute(f"SELECT {_SERIES_COLUMNS} FROM series s WHERE s.id = ?", (series_id,)).fetchone()
        return self._series_record(row) if row else None

    def all_series(self) -> list[SeriesRecord]:
        rows = self._db.execute(f"SELECT {_SERIES_COLUMNS} FROM series s ORDER BY s.id").fetchall()
        return [self._series_record(row) for row in rows]

    def recent_series_of(self, author: str, version: int, total: int, since: datetime, until: datetime) -> list[SeriesRecord]:
        """Series by one author, version and total, dated within [since, until], newest first."""
        rows = self._db.execute(
            f"SELECT {_SERIES_COLUMNS} FROM series s WHERE s.author = ? AND s.version = ? AND s.total = ?"
            " AND s.date BETWEEN ? AND ? ORDER BY s.id DESC",
            (author, version, total, _iso(since), _iso(until)),
        ).fetchall()
        return [self._series_record(row) for row in rows]

    def rerolls_of(self, series_id: int, version: int, author: str) -> list[SeriesRecord]:
        rows = self._db.execute(
            f"SELECT {_SERIES_COLUMNS} FROM series s WHERE s.supersedes_id = ? AND s.version = ? AND s.author = ?"
            " ORDER BY s.id DESC",
            (series_id, version, author),
        ).fetchall()
        return [self._series_record(row) for row in rows]

    def newer_version(self, series_id: int) -> SeriesRecord | None:
        """The newest series that re-rolls this one."""
        row = self._db.execute(
            f"SELECT {_SERIES_COLUMNS} FROM series s WHERE s.supersedes_id = ? ORDER BY s.version DESC, s.id DESC LIMIT 1",
            (series_id,),
        ).fetchone()
        return self._series_record(row) if row else None

    def earlier_versions(self, author: str, normalised_title: str, below_version: int, exclude_id: int) -> list[SeriesRecord]:
        """Series with the same author and title and a lower version, newest version first."""
        return self._series_where("s.author = ? AND s.normalised_title = ? AND s.version < ? AND s.id != ?"
                                  " ORDER BY s.version DESC, s.id DESC", (author, normalised_title, below_version, exclude_id))

    def later_unlinked_versions(self, author: str, normalised_title: str, above_version: int,
                                exclude_id: int) -> list[SeriesRecord]:
        """Series with the same author and title, a higher version and nothing they re-roll yet,
        lowest version first: an earlier version filed late (dated later or not) is what they re-roll."""
        return self._series_where("s.author = ? AND s.normalised_title = ? AND s.version > ? AND s.id != ?"
                                  " AND s.supersedes_id IS NULL ORDER BY s.version, s.id",
                                  (author, normalised_title, above_version, exclude_id))

    def _series_where(self, condition: str, parameters: tuple) -> list[SeriesRecord]:
        rows = self._db.execute(f"SELECT {_SERIES_COLUMNS} FROM series s WHERE {condition}", parameters).fetchall()
        return [self._series_record(row) for row in rows]

    def add_series_hint(self, series_id: int, mail_id: int, name: str, value: str) -> None:
        """Keep a Based-on:/Depends-on: that counts for a series (filing twice keeps it once)."""
        self._db.execute("INSERT OR IGNORE INTO series_hints (series_id, mail_id, name, value) VALUES (?, ?, ?, ?)",
                         (series_id, mail_id, name, value))

    def series_of_mail(self, message_id: str) -> SeriesRecord | None:
        """The series holding this mail as its cover or one of its own (not inherited) patches."""
        row = self._db.execute(
            "SELECT s.id FROM series s JOIN mails m ON m.id = s.cover_mail_id WHERE m.message_id = ?"
            " UNION SELECT p.series_id FROM series_patches p JOIN mails m ON m.id = p.mail_id"
            " WHERE m.message_id = ? AND p.inherited = 0",
            (message_id, message_id),
        ).fetchone()
        return self.series(row[0]) if row else None

    def set_series_pull(self, series_id: int, pull: PullRequest) -> None:
        """Make a series a pull request's, to be tested by fetching `pull`."""
        self._db.execute("UPDATE series SET kind = 'pull', pull_url = ?, pull_ref = ?, pull_tip = ?, pull_base = ?"
                         " WHERE id = ?", (pull.url, pull.ref, pull.tip, pull.base, series_id))

    def set_ignored(self, series_id: int, ignored: bool) -> None:
        self._db.execute("UPDATE series SET ignored = ? WHERE id = ?", (int(ignored), series_id))

    def mails_of_series(self, series_id: int) -> list[MailRecord]:
        """Every filed mail attached to a series (its patches, cover and the replies in its thread)."""
        rows = self._db.execute(
            f"SELECT {_MAIL_COLUMNS} FROM mails WHERE series_id = ? AND status = 'filed' ORDER BY id", (series_id,),
        ).fetchall()
        return [_mail_record(row) for row in rows]

    def _series_record(self, row: tuple) -> SeriesRecord:
        slots = self._db.execute(
            "SELECT p.number, p.mail_id, m.message_id, m.subject, m.title, p.inherited, m.version"
            " FROM series_patches p JOIN mails m ON m.id = p.mail_id WHERE p.series_id = ? ORDER BY p.number",
            (row[0],),
        ).fetchall()
        based_on = self._db.execute(
            "SELECT value FROM series_hints WHERE series_id = ? ORDER BY mail_id DESC, rowid", (row[0],),
        ).fetchall()
        return SeriesRecord(
            id=row[0], title=row[1], normalised_title=row[2], author=row[3], author_name=row[4],
            version=row[5], total=row[6], cover_mail_id=row[7], cover_message_id=row[8],
            date=_moment(row[9]), supersedes_id=row[10], obsolete=bool(row[11]), ignored=bool(row[12]),
            patches=tuple(PatchSlot(s[0], s[1], s[2], s[3] or "", s[4] or "", bool(s[5]), s[6]) for s in slots),
            based_on=tuple(value for (value,) in based_on),
            kind=row[13], pull=PullRequest(*row[14:18]) if row[14] is not None else None,
        )


    # -- test runs --------------------------------------------------------------------------

    def add_test_run(self, series_id: int, started_at: datetime, summary: dict, tip: Sequence[SuiteResult]) -> int:
        cursor = self._db.execute(
            "INSERT INTO test_runs (series_id, started_at, finished_at, summary, tip_results) VALUES (?, ?, ?, ?, ?)",
            (series_id, _iso(started_at), _iso(datetime.now(timezone.utc)), json.dumps(summary),
             json.dumps([_result_json(result) for result in tip])),
        )
        return cursor.lastrowid

    def latest_test_run(self, series_id: int) -> StoredTestRun | None:
        runs = self._test_runs(series_id)
        return runs[0] if runs else None

    def test_run(self, run_id: int) -> StoredTestRun | None:
        row = self._db.execute("SELECT series_id FROM test_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return next(run for run in self._test_runs(row[0]) if run.id == run_id)

    def summaries_before(self, series_id: int, run_id: int | None = None) -> list[dict]:
        """The summaries of a series' test runs (those before run `run_id`, when given), newest first."""
        rows = self._db.execute(
            "SELECT summary FROM test_runs WHERE series_id = ? AND id < ? ORDER BY id DESC",
            (series_id, run_id if run_id is not None else 2**62),
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def author_tested_before(self, author: str, series_id: int) -> bool:
        """Whether a series filed before this one (a lower id) by the same address has a test run."""
        row = self._db.execute(
            "SELECT 1 FROM series s JOIN test_runs r ON r.series_id = s.id"
            " WHERE lower(s.author) = lower(?) AND s.id < ? LIMIT 1", (author, series_id),
        ).fetchone()
        return row is not None

    def _test_runs(self, series_id: int) -> list[StoredTestRun]:
        rows = self._db.execute(
            "SELECT id, series_id, started_at, finished_at, summary, tip_results FROM test_runs"
            " WHERE series_id = ? ORDER BY id DESC", (series_id,),
        ).fetchall()
        return [StoredTestRun(id=row[0], series_id=row[1], started_at=_moment(row[2]), finished_at=_moment(row[3]),
                              summary=json.loads(row[4]), tip=tuple(_result_from(item) for item in json.loads(row[5])))
                for row in rows]

    # -- test requests ----------------------------------------------------------------------

    def request_test(self, series_id: int, reason: str, base_ref: str | None = None, first_only: bool = False,
                     suite: str | None = None) -> TestRequest | None:
        """Ask for a test of a series; with first_only, only if it was never asked (None otherwise)."""
        number = self._db.execute(
            "SELECT coalesce(max(number), 0) + 1 FROM test_requests WHERE series_id = ?", (series_id,)
        ).fetchone()[0]
        if first_only and number > 1:
            return None
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO test_requests (series_id, number, base_ref, reason, created_at, suite)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (series_id, number, base_ref, reason, _iso(datetime.now(timezone.utc)), suite),
        )
        return TestRequest(cursor.lastrowid, series_id, number, base_ref, reason, suite) if cursor.rowcount else None

    def pending_test_requests(self) -> list[TestRequest]:
        rows = self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM test_requests WHERE done_at IS NULL ORDER BY id"
        ).fetchall()
        return [_test_request(row) for row in rows]

    def claim_test_request(self, now: datetime, claimer: str, lease: timedelta,
                           claimer_alive: Callable[[str], bool]) -> TestRequest | None:
        """Claim the oldest open request that is due and free, and return it (None: nothing to do).

        A request is free when nobody claimed it, its lease ended, or its claimer is known to
        be dead (a crash). Requests of a series wait while another of the same series runs, so
        that a retest never overtakes the test it follows."""
        with self.transaction():
            rows = self._db.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM test_requests WHERE done_at IS NULL ORDER BY id"
            ).fetchall()
            busy: set[int] = set()
            for row in rows:
                request = _test_request(row)
                held = request.claimed_by is not None and request.claimed_until > now and claimer_alive(request.claimed_by)
                if held or request.series_id in busy:
                    busy.add(request.series_id)
                    continue
                busy.add(request.series_id)
                if request.next_attempt_at is not None and request.next_attempt_at > now:
                    continue
                self._db.execute(
                    "UPDATE test_requests SET claimed_by = ?, claimed_until = ?, started_at = ? WHERE id = ?",
                    (claimer, _iso(now + lease), _iso(now), request.id),
                )
                return self.test_request(request.id)
        return None

    def test_request(self, request_id: int) -> TestRequest | None:
        row = self._db.execute(f"SELECT {_REQUEST_COLUMNS} FROM test_requests WHERE id = ?", (request_id,)).fetchone()
        return _test_request(row) if row else None

    def renew_test_claims(self, claimer: str, until: datetime, request_ids: Sequence[int] | None = None) -> None:
        """Extend the leases of the requests a live worker is still running (only `request_ids`,
        when given: a claim whose worker ended without letting go must lapse, not live on)."""
        if request_ids is None:
            self._db.execute("UPDATE test_requests SET claimed_until = ? WHERE claimed_by = ? AND done_at IS NULL",
                             (_iso(until), claimer))
            return
        self._db.executemany(
            "UPDATE test_requests SET claimed_until = ? WHERE id = ? AND claimed_by = ? AND done_at IS NULL",
            [(_iso(until), request_id, claimer) for request_id in request_ids])

    def retry_test_request(self, request_id: int, claimer: str, error: str, next_attempt_at: datetime) -> bool:
        """A run that could not start or could not judge (the machine's failure): let go of it until
        `next_attempt_at`. False if `claimer` no longer holds it."""
        cursor = self._db.execute(
            "UPDATE test_requests SET claimed_by = NULL, claimed_until = NULL, attempts = attempts + 1,"
            " last_error = ?, next_attempt_at = ? WHERE id = ? AND claimed_by = ?",
            (error, _iso(next_attempt_at), request_id, claimer),
        )
        return bool(cursor.rowcount)

    def give_up_test_request(self, request_id: int, test_run_id: int | None, claimer: str, error: str) -> bool:
        """Close a request whose infrastructure retries are spent, keeping its last error; False if
        `claimer` no longer holds it."""
        now = _iso(datetime.now(timezone.utc))
        cursor = self._db.execute(
            "UPDATE test_requests SET done_at = ?, given_up_at = ?, test_run_id = ?, attempts = attempts + 1,"
            " last_error = ?, claimed_by = NULL, claimed_until = NULL WHERE id = ? AND done_at IS NULL AND claimed_by = ?",
            (now, now, test_run_id, error, request_id, claimer),
        )
        return bool(cursor.rowcount)

    def given_up_test_requests(self) -> list[TestRequest]:
        """Requests given up whose series has had no test request finished since: the operator's to see."""
        rows = self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM test_requests r WHERE given_up_at IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM test_requests later WHERE later.series_id = r.series_id AND later.number > r.number"
            "  AND later.done_at IS NOT NULL AND later.given_up_at IS NULL) ORDER BY id"
        ).fetchall()
        return [_test_request(row) for row in rows]

    def finish_test_request(self, request_id: int, test_run_id: int | None, claimer: str | None = None) -> bool:
        """Close a request; with `claimer`, only while that claimer still holds it (False if not)."""
        cursor = self._db.execute(
            "UPDATE test_requests SET done_at = ?, test_run_id = ?, claimed_by = NULL, claimed_until = NULL"
            " WHERE id = ? AND done_at IS NULL AND (? IS NULL OR claimed_by = ?)",
            (_iso(datetime.now(timezone.utc)), test_run_id, request_id, claimer, claimer),
        )
        return bool(cursor.rowcount)

    def request_reasons(self, series_id: int) -> list[str]:
        return [row[0] for row in self._db.execute(
            "SELECT reason FROM test_requests WHERE series_id = ? ORDER BY number", (series_id,))]

    def last_received(self, series_id: int) -> datetime | None:
        """When the newest patch or cover letter of a series arrived (the grace period for incomplete
        ones counts from it). Replies in its thread do not count: anyone on the list can send one,
        and a reply every few hours would otherwise keep the series from ever being tested."""
        row = self._db.execute(
            "SELECT max(m.received_at) FROM mails m WHERE m.id IN"
            " (SELECT mail_id FROM series_patches WHERE series_id = ? AND inherited = 0"
            "  UNION SELECT cover_mail_id FROM series WHERE id = ?)",
            (series_id, series_id),
        ).fetchone()
        return _moment(row[0])

    # -- services ---------------------------------------------------------------------------

    def note_service(self, claimer: str, state: str, sources: Sequence[str]) -> None:
        now = _iso(datetime.now(timezone.utc))
        self._db.execute(
            "INSERT INTO services (claimer, started_at, beat_at, state, sources) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (claimer) DO UPDATE SET beat_at = excluded.beat_at, state = excluded.state,"
            " sources = excluded.sources",
            (claimer, now, now, state, json.dumps(list(sources))),
        )

    def services(self) -> list[ServiceRecord]:
        rows = self._db.execute(
            "SELECT claimer, started_at, beat_at, state, sources FROM services ORDER BY started_at DESC"
        ).fetchall()
        return [ServiceRecord(row[0], _moment(row[1]), _moment(row[2]), row[3], tuple(json.loads(row[4]))) for row in rows]

    def add_service_events(self, events: Sequence[tuple[datetime, str, str]], keep: int = 1000) -> None:
        """Keep the warnings and errors a service logged; only the newest `keep` stay."""
        self._db.executemany("INSERT INTO service_events (at, level, message) VALUES (?, ?, ?)",
                             [(_iso(at), level, message) for at, level, message in events])
        self._db.execute("DELETE FROM service_events WHERE id <= (SELECT max(id) FROM service_events) - ?", (keep,))

    def service_events(self, limit: int) -> list[tuple[datetime, str, str]]:
        rows = self._db.execute("SELECT at, level, message FROM service_events ORDER BY id DESC LIMIT ?", (limit,))
        return [(_moment(at), level, message) for at, level, message in rows]

    # -- commands ---------------------------------------------------------------------------

    def unread_command_mails(self) -> list[MailRecord]:
        """Filed mails in a series' thread (not its patches) that were never read for commands."""
        rows = self._db.execute(
            f"SELECT {_MAIL_COLUMNS} FROM mails WHERE status = 'filed' AND series_id IS NOT NULL"
            " AND kind NOT IN ('patch', 'cover', 'pull')"
            " AND id NOT IN (SELECT mail_id FROM command_mails) ORDER BY id"
        ).fetchall()
        return [_mail_record(row) for row in rows]

    def claim_command_mail(self, mail_id: int, series_id: int, sender: str, commands: int, claimer: str) -> bool:
        """Note that a mail is being acted on; False when it was (or is being) already."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO command_mails (mail_id, series_id, sender, commands, claimed_by, handled_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (mail_id, series_id, sender, commands, claimer, _iso(datetime.now(timezone.utc))),
        )
        return bool(cursor.rowcount)

    def finish_command_mail(self, mail_id: int, outcome: object) -> None:
        self._db.execute("UPDATE command_mails SET outcome = ?, claimed_by = NULL WHERE mail_id = ?",
                         (json.dumps(outcome), mail_id))

    def interrupted_command_mails(self, claimer_alive: Callable[[str], bool]) -> list[MailRecord]:
        """Command mails claimed by a process that died before storing what came of them."""
        rows = self._db.execute(
            "SELECT mail_id, claimed_by FROM command_mails WHERE outcome IS NULL ORDER BY mail_id"
        ).fetchall()
        return [self.mail_by_id(mail_id) for mail_id, claimer in rows if not claimer or not claimer_alive(claimer)]

    def commands_since(self, sender: str, since: datetime) -> int:
        """How many command lines a sender sent that were read since `since` (the rate limit)."""
        return self._db.execute(
            "SELECT coalesce(sum(commands), 0) FROM command_mails WHERE sender = ? AND handled_at >= ?",
            (sender, _iso(since)),
        ).fetchone()[0]

    def claim_command_signature(self, signature: str, mail_id: int) -> int:
        """Note that the mail acts under this DKIM signature; returns the mail that did so first."""
        self._db.execute(
            "INSERT OR IGNORE INTO command_signatures (signature, mail_id, acted_at) VALUES (?, ?, ?)",
            (signature, mail_id, _iso(datetime.now(timezone.utc))),
        )
        return self._db.execute("SELECT mail_id FROM command_signatures WHERE signature = ?", (signature,)).fetchone()[0]

    def claim_notice(self, scope: str, sender: str, kind: str) -> bool:
        """Note a notice given once per scope and sender; False when it was given already."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO command_notices (scope, sender, kind, created_at) VALUES (?, ?, ?, ?)",
            (scope, sender, kind, _iso(datetime.now(timezone.utc))),
        )
        return bool(cursor.rowcount)

    # -- outbox -----------------------------------------------------------------------------

    def instance_id(self) -> str:
        """This database's random id (32 hex digits), made once when its schema was created."""
        return self._db.execute("SELECT id FROM instance").fetchone()[0]

    def enqueue_reply(self, key: str, series_id: int | None, message_id: str, sender: str,
                      recipients: Sequence[str], data: bytes) -> bool:
        """Keep a reply to send; False when one with this key exists (it is never made twice)."""
        now = _iso(datetime.now(timezone.utc))
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO outbox (key, series_id, message_id, sender, recipients, data, next_attempt_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, series_id, message_id, sender, json.dumps(list(recipients)), data, now, now),
        )
        return bool(cursor.rowcount)

    def claim_due_replies(self, now: datetime, claimer: str, lease: timedelta,
                          claimer_alive: Callable[[str], bool]) -> list[OutboxItem]:
        """Claim the replies due for sending that nobody else is sending, and return them.

        A claim lapses when its lease ends or its claimer is known to be dead (a crash)."""
        with self.transaction():
            rows = self._db.execute(
                f"SELECT {_OUTBOX_COLUMNS}, claimed_by, claimed_until FROM outbox"
                " WHERE status IN ('pending', 'held') AND next_attempt_at <= ? ORDER BY id", (_iso(now),),
            ).fetchall()
            free = [row for row in rows
                    if row[-2] is None or _moment(row[-1]) < now or not claimer_alive(row[-2])]
            self._db.executemany(
                "UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                [(claimer, _iso(now + lease), row[0]) for row in free],
            )
        return [_outbox_item(row[:-2]) for row in free]

    def replies(self, status: str | None = None) -> list[OutboxItem]:
        rows = self._db.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE ? IS NULL OR status = ? ORDER BY id", (status, status)
        ).fetchall()
        return [_outbox_item(row) for row in rows]

    def mark_reply_sent(self, item_id: int, note: str | None = None) -> None:
        self._db.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = ?,"
            " claimed_by = NULL WHERE id = ?",
            (_iso(datetime.now(timezone.utc)), note, item_id),
        )

    def mark_reply_retry(self, item_id: int, error: str, next_attempt_at: datetime) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, claimed_by = NULL"
            " WHERE id = ?",
            (error, _iso(next_attempt_at), item_id),
        )

    def hold_reply(self, item_id: int, error: str, next_attempt_at: datetime) -> None:
        """Past the retry window: keep the reply, tried again at `next_attempt_at` (status shows it)."""
        self._db.execute(
            "UPDATE outbox SET status = 'held', attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
            " claimed_by = NULL WHERE id = ?",
            (error, _iso(next_attempt_at), item_id),
        )

    def requeue_replies(self, item_ids: Sequence[int] | None) -> list[int]:
        """Queue held or failed replies (these, or all when None) to be sent now, with a fresh
        retry window; returns the ids queued (a sent reply is never queued again)."""
        now = _iso(datetime.now(timezone.utc))
        with self.transaction():
            rows = self._db.execute(
                "SELECT id FROM outbox WHERE status IN ('held', 'failed')"
                " AND (? IS NULL OR id IN (SELECT value FROM json_each(?))) ORDER BY id",
                (None if item_ids is None else 1, json.dumps(list(item_ids or []))),
            ).fetchall()
            ids = [row[0] for row in rows]
            self._db.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, claimed_by = NULL,"
                " claimed_until = NULL WHERE id IN (SELECT value FROM json_each(?))",
                (now, json.dumps(ids)),
            )
        return ids

    def reply(self, item_id: int) -> OutboxItem | None:
        row = self._db.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return _outbox_item(row) if row else None

    def mark_reply_failed(self, item_id: int, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, claimed_by = NULL"
            " WHERE id = ?",
            (error, item_id),
        )

    def outbox_counts(self) -> dict[str, int]:
        """Replies per status; pending ones that failed at least once count as "retrying"."""
        counts: dict[str, int] = {}
        for status, number in self._db.execute(
            "SELECT CASE WHEN status = 'pending' AND attempts > 0 THEN 'retrying' ELSE status END, count(*)"
            " FROM outbox GROUP BY 1"
        ):
            counts[status] = number
        return counts

    def base_result(self, base_commit: str, suite: str, suite_key: str) -> SuiteResult | None:
        row = self._db.execute(
            "SELECT result FROM base_results WHERE base_commit = ? AND suite = ? AND suite_key = ?",
            (base_commit, suite, suite_key),
        ).fetchone()
        return _result_from(json.loads(row[0])) if row else None

    def base_results_of(self, base_commit: str) -> list[SuiteResult]:
        """Every kept base result of one commit, whatever its suite key (bench/aurweb's table)."""
        rows = self._db.execute("SELECT result FROM base_results WHERE base_commit = ? ORDER BY rowid", (base_commit,))
        return [_result_from(json.loads(row[0])) for row in rows.fetchall()]

    def keep_base_result(self, base_commit: str, suite_key: str, result: SuiteResult) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO base_results (base_commit, suite, suite_key, result) VALUES (?, ?, ?, ?)",
            (base_commit, result.suite, suite_key, json.dumps(_result_json(result))),
        )

    def clear_base_results(self, base_commit: str | None = None, suite: str | None = None) -> int:
        """Forget kept base results (of one base commit, by prefix, and/or one suite): how many."""
        cursor = self._db.execute(
            "DELETE FROM base_results WHERE (? IS NULL OR base_commit LIKE ? || '%') AND (? IS NULL OR suite = ?)",
            (base_commit, base_commit, suite, suite),
        )
        return cursor.rowcount

    def trust_dependencies(self, series_id: int, environment: str, files_digest: str, by: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO trusted_dependencies (series_id, environment, files_digest, trusted_by, trusted_at)"
            " VALUES (?, ?, ?, ?, ?)", (series_id, environment, files_digest, by, _iso(datetime.now(timezone.utc))),
        )

    def trusted_dependencies(self, series_id: int) -> set[tuple[str, str]]:
        """(environment, files digest) pairs a maintainer trusted for this series version."""
        return set(self._db.execute(
            "SELECT environment, files_digest FROM trusted_dependencies WHERE series_id = ?", (series_id,)).fetchall())


@dataclass(frozen=True)
class TestRequest:
    __test__ = False

    id: int
    series_id: int
    number: int
    base_ref: str | None
    reason: str
    suite: str | None = None  # only this suite (a retest of one suite)
    claimed_by: str | None = None  # the worker running it, host:pid:start
    claimed_until: datetime | None = None
    started_at: datetime | None = None
    attempts: int = 0  # runs that could not start or could not judge (the machine's failures)
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    given_up_at: datetime | None = None  # infrastructure retries spent: answered "could not be tested"


_REQUEST_COLUMNS = ("id, series_id, number, base_ref, reason, suite, claimed_by, claimed_until, started_at, attempts,"
                    " last_error, next_attempt_at, given_up_at")


def _test_request(row: tuple) -> TestRequest:
    return TestRequest(*row[:7], _moment(row[7]), _moment(row[8]), row[9], row[10], _moment(row[11]), _moment(row[12]))


@dataclass(frozen=True)
class ServiceRecord:
    """A `patchbot serve` process as it last noted itself."""

    claimer: str
    started_at: datetime
    beat_at: datetime
    state: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class OutboxItem:
    id: int
    key: str
    series_id: int | None
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    status: str  # pending | held (past the retry window) | sent | failed (refused for good)
    attempts: int
    last_error: str | None
    created_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class StoredTestRun:
    id: int
    series_id: int
    started_at: datetime
    finished_at: datetime
    summary: dict  # the JSON object `patchbot test --json` printed
    tip: tuple[SuiteResult, ...]


_OUTBOX_COLUMNS = ("id, key, series_id, message_id, sender, recipients, data, status, attempts, last_error,"
                   " created_at, next_attempt_at")


def _outbox_item(row: tuple) -> OutboxItem:
    return OutboxItem(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5])), row[6], row[7], row[8], row[9],
                      _moment(row[10]), _moment(row[11]))


def _result_json(result: SuiteResult) -> dict:
    cases = None
    if result.report is not None:
        cases = [[case.name, case.outcome.value, case.message, case.detail] for case in result.report.cases]
    broken = [result.broken.kind.value, result.broken.evidence] if result.broken else None
    return {"suite": result.suite, "outcome": result.outcome.value, "cases": cases,
            "duration_s": result.duration_s, "detail": result.detail, "exit_code": result.exit_code, "broken": broken}


def _result_from(data: dict) -> SuiteResult:
    report = None
    if data["cases"] is not None:
        report = TestReport(tuple(TestCase(name, Outcome(outcome), message, detail)
                                  for name, outcome, message, detail in data["cases"]))
    broken = Breakage(BreakageKind(data["broken"][0]), data["broken"][1]) if data.get("broken") else None
    return SuiteResult(data["suite"], Outcome(data["outcome"]), report, data["duration_s"], data["detail"],
                       data.get("exit_code"), broken)  # results kept before issue 12 item 4 have neither


_MAIL_COLUMNS = (
    "id, message_id, synthetic_id, origin, received_at, status, reason, kind, kind_rule, subject,"
    " title, sender, sender_name, date, version, counter, total, in_reply_to, details, series_id"
)
_SERIES_COLUMNS = (
    "s.id, s.title, s.normalised_title, s.author, s.author_name, s.version, s.total, s.cover_mail_id,"
    " (SELECT message_id FROM mails WHERE id = s.cover_mail_id), s.date, s.supersedes_id, s.obsolete, s.ignored,"
    " s.kind, s.pull_url, s.pull_ref, s.pull_tip, s.pull_base"
)


def _mail_record(row: tuple) -> MailRecord:
    facts = None
    if row[7] is not None:
        details = json.loads(row[18] or "{}")
        facts = MailFacts(
            kind=row[7], kind_rule=row[8], subject=row[9], title=row[10], sender=row[11],
            sender_name=row[12], date=_moment(row[13]), version=row[14], counter=row[15],
            total=row[16], in_reply_to=row[17], has_diff=details.get("has_diff", False),
            files=tuple(FileChange(**change) for change in details.get("files", [])),
            trailers=tuple(Trailer(name, value) for name, value in details.get("trailers", [])),
            pull_url=details.get("pull_url"), message_id=row[1],
            auto_submitted=details.get("auto_submitted"), bounce=details.get("bounce", False),
        )
    return MailRecord(
        id=row[0], message_id=row[1], synthetic_id=bool(row[2]), origin=row[3],
        received_at=_moment(row[4]), status=row[5], reason=row[6], facts=facts, series_id=row[19],
    )
