"""Command mails read once, replayed signatures and notices sent once (command_mails,
command_signatures, command_notices).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone

from patchbot.store.records import MailRecord, _iso, _MAIL_COLUMNS, _mail_record


class Commands:
    """Store's commands component (see the module docstring); its methods run on the connection and
    in the transaction of `Connection`."""

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
