"""Watch a Maildir that fetchmail or procmail delivers to, and store each new mail.

Only new/ is read. A delivery agent renames a finished mail into new/ (never a half-written
one), and a mail patchbot has stored moves to cur/ marked seen (`:2,S`), so new/ holds exactly
what is still to store, and a poll never lists the ever-growing cur/. Reading cur/ for mails
without the S flag as well would only matter if a mail client shared the folder; it must not:
a client moves what it notices to cur/, and clearing a flag there would make patchbot take a
mail again. A crash between storing and moving re-reads the mail next time, and the store
knows its Message-ID: nothing is stored twice, nothing is lost.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from patchbot.config.records import MaildirSourceConfig
from patchbot.series.intake import keep
from patchbot.sources import RawMail, UnreadableSource
from patchbot.store.database import Store

log = logging.getLogger(__name__)


class MaildirWatcher:
    """Store what a Maildir's new/ holds; `poll_once` is called every `[sources.maildir] poll`."""

    def __init__(self, settings: MaildirSourceConfig):
        """Raises UnreadableSource, naming the path, when it is not a Maildir (no new/ or cur/)."""
        self.path = settings.path
        for sub in ("new", "cur"):
            if not (self.path / sub).is_dir():
                raise UnreadableSource(f"{self.path} is not a Maildir: it has no {sub}/ folder")

    def poll_once(self, store: Store) -> int:
        """Store every mail in new/ and move it to cur/; returns how many were new to the store.

        A store failure (StoreError, sqlite3.Error, OSError) is raised unchanged and leaves the
        mail, and those after it, in new/ for the next poll. UnreadableSource: new/ cannot be
        listed. A file another reader took meanwhile is skipped; one that cannot be read is
        logged and left in new/."""
        stored = 0
        try:
            names = sorted(entry.name for entry in os.scandir(self.path / "new") if entry.is_file())
        except OSError as error:
            raise UnreadableSource(f"{self.path / 'new'}: {error.strerror}") from None
        for name in names:
            source = self.path / "new" / name
            try:
                data = source.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as error:
                log.error("maildir: cannot read %s: %s", source, error.strerror)
                continue
            with store.transaction():
                message_id, mail_id = keep(store, RawMail(data, f"maildir:{name}"))
            if mail_id is None:
                log.info("maildir: %s was stored already", message_id)
            else:
                log.info("maildir: stored %s (%d bytes)", message_id, len(data))
                stored += 1
            _mark_seen(source, self.path / "cur")
        return stored


def _mark_seen(source: Path, cur: Path) -> None:
    """Move a stored mail to cur/ with the seen flag, as a mail client marks one it has read."""
    base = source.name.split(":2,", 1)[0]
    try:
        source.rename(cur / f"{base}:2,S")
    except FileNotFoundError:
        pass  # another reader moved it: it is stored, which is all we need
