"""Mails as received, what parsing found in them, and the ones set aside (table mails)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from patchbot.store.records import (
    FailedMail, MailFacts, MailRecord, NewMail, _iso, _MAIL_COLUMNS, _mail_record, _moment,
)


class Mails:
    """Store's mails component (see the module docstring); its methods run on the connection and
    in the transaction of `Connection`."""

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
