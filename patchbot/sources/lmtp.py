"""Receive the list's mail from the MTA over LMTP, and answer 250 only once it is stored.

The MTA keeps a mail until it hears 250: so the mail is committed to the store (fsynced, the
store runs with synchronous=FULL) before the answer, and any trouble of ours is a 451, which
makes the MTA try again later rather than bounce the mail. Filing (parsing, series) happens
after, in the pipeline's "file mail" stage, so a mail patchbot cannot parse is still kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP

from patchbot.series.intake import keep
from patchbot.sources import RawMail
from patchbot.store.database import Store

log = logging.getLogger(__name__)

ERR_451 = "451 4.3.0 patchbot cannot store the mail now; please try again later"


class LmtpDelivery:
    """An aiosmtpd handler that keeps every delivered mail in the store."""

    def __init__(self, db_path: Path, on_stored: Callable[[], None] | None = None,
                 on_trouble: Callable[[BaseException], None] | None = None):
        self.db_path = db_path
        self.on_stored = on_stored  # `patchbot serve` wakes its scheduler
        self.on_trouble = on_trouble  # and keeps the time while the store cannot be written
        self._store: Store | None = None  # opened in the server's thread: SQLite wants that

    async def handle_DATA(self, server, session, envelope) -> str:
        data = envelope.original_content or envelope.content
        try:
            if self._store is None:
                self._store = Store(self.db_path)
            with self._store.transaction():
                message_id, mail_id = keep(self._store, RawMail(data, "lmtp"))
        except Exception as error:  # noqa: BLE001 - whatever it is, 451: the MTA keeps the mail and retries
            # (the store reopens its connection after the machine's trouble: a database that was
            # read-only when first opened is written once its permissions are fixed)
            log.error("lmtp: could not store a mail of %d bytes: %s: %s", len(data), type(error).__name__, error)
            if self.on_trouble is not None:
                self.on_trouble(error)
            return ERR_451
        if mail_id is None:
            log.info("lmtp: %s was stored already", message_id)
            return f"250 2.0.0 {message_id} was stored already"
        log.info("lmtp: stored %s (%d bytes)", message_id, len(data))
        if self.on_stored is not None:
            self.on_stored()
        return f"250 2.0.0 stored as {message_id}"


class _PatchLmtp(LMTP):
    # RFC 5321's 1000 octets would answer a patch with a long line (minified code, a lock file)
    # with a permanent 500, and the MTA would bounce it: the mail would be lost to patchbot.
    line_length_limit = 1024 * 1024


class _SpeaksLmtp:
    def factory(self):
        return _PatchLmtp(self.handler, **self.SMTP_kwargs)


class LmtpController(_SpeaksLmtp, Controller):
    """LMTP on a TCP port (127.0.0.1 by default)."""


class LmtpSocketController(_SpeaksLmtp, UnixSocketController):
    """LMTP on a Unix socket, as Postfix's lmtp transport delivers to one."""
