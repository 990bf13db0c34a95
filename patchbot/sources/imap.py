"""Poll an IMAP mailbox subscribed to the list, and store each unseen mail before marking it seen.

A mail is fetched with BODY.PEEK[] (which leaves it unseen), stored, and only then flagged
\\Seen: a crash in between fetches it again next time, and the store knows its Message-ID.
The password is read from its file at each login and never logged.
"""

from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl

from patchbot.config import ImapSourceConfig
from patchbot.intake import keep
from patchbot.sources import RawMail, UnreadableSource
from patchbot.store import Store

log = logging.getLogger(__name__)


class ImapUnavailable(UnreadableSource):
    """The server cannot be reached, refuses the login, or answers what we cannot use."""


class ImapPoller:
    """One connection to one folder, opened on first use and again after any failure."""

    def __init__(self, settings: ImapSourceConfig):
        self.settings = settings
        self._client: imaplib.IMAP4 | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.username}@{self.settings.host}/{self.settings.folder}"

    def poll_once(self, store: Store) -> int:
        """Store every unseen mail of the folder; returns how many were new to the store.

        Raises ImapUnavailable for the server's trouble (the caller backs off and retries); a
        store failure propagates and leaves the mail unseen."""
        try:
            client = self._client or self._connect()
            # On a connection kept open, a server tells of new mail and flag changes at a NOOP.
            status, data = client.noop()
            _expect(status, data, "NOOP")
            status, data = client.uid("SEARCH", None, "UNSEEN")
            _expect(status, data, "UID SEARCH UNSEEN")
            stored = 0
            for uid in data[0].split():
                stored += self._take(client, store, uid.decode())
            return stored
        except (imaplib.IMAP4.error, OSError, EOFError) as error:
            self.close()
            raise ImapUnavailable(f"imap {self.where}: {error}") from None

    def _take(self, client: imaplib.IMAP4, store: Store, uid: str) -> int:
        status, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
        _expect(status, data, f"UID FETCH {uid}")
        raw = next((part[1] for part in data if isinstance(part, tuple)), None)
        if raw is None:
            return 0  # expunged meanwhile
        with store.transaction():
            message_id, mail_id = keep(store, RawMail(raw, f"imap:{self.settings.folder}/{uid}"))
        status, data = client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)")
        _expect(status, data, f"UID STORE {uid} +FLAGS (\\Seen)")
        if mail_id is None:
            log.info("imap: %s was stored already", message_id)
            return 0
        log.info("imap: stored %s (%d bytes)", message_id, len(raw))
        return 1

    def _connect(self) -> imaplib.IMAP4:
        settings = self.settings
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        try:
            password = settings.password_file.read_text().removesuffix("\n")
        except OSError as error:
            raise ImapUnavailable(f"imap {self.where}: cannot read the password file "
                                  f"{settings.password_file}: {error.strerror}") from None
        if settings.security == "tls":
            client = imaplib.IMAP4_SSL(settings.host, settings.port or 993, ssl_context=context,
                                       timeout=settings.timeout_s)
        else:
            client = imaplib.IMAP4(settings.host, settings.port or 143, timeout=settings.timeout_s)
            if settings.security == "starttls":
                client.starttls(context)
        try:
            client.login(settings.username, password)
        except imaplib.IMAP4.error as error:
            _logout(client)
            # The server's words, which never echo the password; ours carry only the user name.
            raise ImapUnavailable(f"imap {self.where}: login refused: {_text(error)}") from None
        status, data = client.select(_quoted(settings.folder))
        _expect(status, data, f"SELECT {settings.folder}")
        log.info("imap: connected to %s", self.where)
        self._client = client
        return client

    def close(self) -> None:
        if self._client is not None:
            _logout(self._client)
            self._client = None


def _expect(status: str, data, command: str) -> None:
    if status != "OK":
        raise imaplib.IMAP4.error(f"{command}: {status} {_text(data)}")


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        value = b" ".join(part if isinstance(part, bytes) else str(part).encode() for part in value if part)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value)


def _quoted(folder: str) -> str:
    return folder if re.fullmatch(r"[A-Za-z0-9._/-]+", folder) else '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logout(client: imaplib.IMAP4) -> None:
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError, EOFError, socket.timeout):
        pass  # closing a broken connection: nothing to save
