"""Replies waiting to be sent, each once, and the instance id their Message-IDs carry (outbox,
instance).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from patchbot.store.records import OutboxItem, _iso, _moment, _OUTBOX_COLUMNS, _outbox_item


class Outbox:
    """Store's outbox component (see the module docstring); its methods run on the connection and
    in the transaction of `Connection`."""

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
