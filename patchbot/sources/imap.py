"""Poll an IMAP mailbox subscribed to the list, and store each unseen mail before marking it seen.

A mail is fetched with BODY.PEEK[] (which leaves it unseen), stored, and only then flagged
\\Seen: a crash in between fetches it again next time, and the store knows its Message-ID.
The password is read from its file at each login and never logged.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from patchbot.config.records import ImapSourceConfig
from patchbot.series.intake import keep
from patchbot.sources import RawMail, UnreadableSource
from patchbot.store.database import Store

log = logging.getLogger(__name__)

# What imaplib raises when the server or the network fails us: IMAP4.abort is an IMAP4.error,
# and ssl.SSLError and socket timeouts are OSErrors.
SERVER_TROUBLE = (imaplib.IMAP4.error, OSError, EOFError)


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

        Raises ImapUnavailable, in one line without the password, for the server's trouble
        (the caller logs it, backs off and retries; the connection is reopened then). A store
        failure is raised unchanged, leaves the mail unseen and keeps the connection."""
        client = self._reused() or self._connect()
        with self._talking():
            status, data = client.uid("SEARCH", None, "UNSEEN")
            _expect(status, data, "UID SEARCH UNSEEN")
        stored = 0
        for uid in data[0].split():
            stored += self._take(client, store, uid.decode())
        return stored

    def close(self) -> None:
        """Log out; the next poll connects again."""
        if self._client is not None:
            _logout(self._client)
            self._client = None

    def _reused(self) -> imaplib.IMAP4 | None:
        """The connection kept from the last poll, if it still answers.

        The NOOP is also when a server tells a kept connection of new mail and flag changes.
        A connection dropped while idle (the server's autologout, a NAT forgetting it) is
        closed quietly, to be reopened at once: that is no trouble worth reporting."""
        if self._client is None:
            return None
        try:
            status, data = self._client.noop()
            _expect(status, data, "NOOP")
            return self._client
        except SERVER_TROUBLE as error:
            log.info("imap: the connection to %s was dropped (%s); connecting again", self.where, error)
            self.close()
            return None

    def _take(self, client: imaplib.IMAP4, store: Store, uid: str) -> int:
        with self._talking():
            status, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
            _expect(status, data, f"UID FETCH {uid}")
        raw = next((part[1] for part in data if isinstance(part, tuple)), None)
        if raw is None:
            return 0  # expunged meanwhile
        with store.transaction():
            message_id, mail_id = keep(store, RawMail(raw, f"imap:{self.settings.folder}/{uid}"))
        with self._talking():
            status, data = client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)")
            _expect(status, data, f"UID STORE {uid} +FLAGS (\\Seen)")
        if mail_id is None:
            log.info("imap: %s was stored already", message_id)
            return 0
        log.info("imap: stored %s (%d bytes)", message_id, len(raw))
        return 1

    @contextmanager
    def _talking(self) -> Iterator[None]:
        """Turn the server's trouble into ImapUnavailable, and drop the connection it broke."""
        try:
            yield
        except SERVER_TROUBLE as error:
            self.close()
            raise ImapUnavailable(f"imap {self.where}: {error}") from None

    def _connect(self) -> imaplib.IMAP4:
        settings = self.settings
        password = self._password()
        context = self._tls_context() if settings.security != "plain" else None
        with self._talking():
            if settings.security == "tls":
                client = imaplib.IMAP4_SSL(settings.host, settings.port or 993, ssl_context=context,
                                           timeout=settings.timeout_s)
            else:
                client = imaplib.IMAP4(settings.host, settings.port or 143, timeout=settings.timeout_s)
            self._client = client  # from here on, any failure logs it out
            if context is not None and settings.security == "starttls":
                client.starttls(context)
            self._login(client, password)
            status, data = client.select(_quoted(settings.folder))
            _expect(status, data, f"SELECT {settings.folder}")
        log.info("imap: connected to %s", self.where)
        return client

    def _password(self) -> str:
        try:
            return self.settings.password_file.read_text().removesuffix("\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ImapUnavailable(f"imap {self.where}: cannot read the password file "
                                  f"{self.settings.password_file}: {reason}") from None

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.settings.ca_file
        try:
            return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as error:
            raise ImapUnavailable(f"imap {self.where}: cannot use the CA file {ca_file}: "
                                  f"{getattr(error, 'strerror', None) or error}") from None

    def _login(self, client: imaplib.IMAP4, password: str) -> None:
        # Only the server's words and the user name reach a message: the server never echoes
        # a password, and Python's own errors here (an encoding one) are replaced, not chained.
        try:
            client.login(self.settings.username, password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as error:
            self.close()
            raise ImapUnavailable(f"imap {self.where}: login refused: {_text(error)}") from None
        except UnicodeEncodeError:
            self.close()
            raise ImapUnavailable(f"imap {self.where}: the user name or password is not ASCII, "
                                  "which IMAP LOGIN cannot send") from None


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
    """The folder as an IMAP astring: imaplib sends arguments as they are."""
    return folder if re.fullmatch(r"[A-Za-z0-9._/-]+", folder) else '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logout(client: imaplib.IMAP4) -> None:
    try:
        client.logout()
    except SERVER_TROUBLE:
        pass  # closing a broken connection: nothing to save
