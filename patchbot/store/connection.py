"""One SQLite connection for every component: open and migrate, transactions, faults of the machine."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from patchbot import PatchbotError
from patchbot.store.migrations import MIGRATIONS


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


def default_db_path() -> Path:
    """$XDG_DATA_HOME/patchbot/patchbot.db, else ~/.local/share/patchbot/patchbot.db."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "patchbot" / "patchbot.db"


class Connection:
    """Store's connection component (see the module docstring); its methods run on the connection and
    in the transaction of `Connection`."""

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
