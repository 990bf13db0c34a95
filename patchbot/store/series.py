"""Series, their patches, versions, thread references and hints (series, series_patches, thread_refs,
series_hints, signed_series).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from patchbot.series.pulls import PullRequest
from patchbot.store.records import (
    MailRecord, PatchSlot, SeriesRecord, _iso, _MAIL_COLUMNS, _mail_record, _moment, _SERIES_COLUMNS,
)


class Series:
    """Store's series component (see the module docstring); its methods run on the connection and
    in the transaction of `Connection`."""

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

    def author_tested_before(self, author: str, series_id: int) -> bool:
        """Whether a series filed before this one (a lower id) by the same address has a test run."""
        row = self._db.execute(
            "SELECT 1 FROM series s JOIN test_runs r ON r.series_id = s.id"
            " WHERE lower(s.author) = lower(?) AND s.id < ? LIMIT 1", (author, series_id),
        ).fetchone()
        return row is not None
