"""`patchbot serve` processes and their recent events (services, service_events)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from patchbot.store.records import ServiceRecord, _iso, _moment


class Services:
    """Store's services component (see the module docstring); its methods run on the connection and
    in the transaction of `Connection`."""

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
