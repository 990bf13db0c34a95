"""Test runs, the durable queue of test requests, kept base results and trusted dependencies
(test_runs, test_requests, base_results, trusted_dependencies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from patchbot.testing.verdict import SuiteResult
from patchbot.store.records import (
    StoredTestRun, TestRequest, _iso, _moment, _REQUEST_COLUMNS, _result_from, _result_json, _test_request,
)


class TestRuns:
    """Store's testruns component (see the module docstring); its methods run on the connection and
    in the transaction of `Connection`."""

    def add_test_run(self, series_id: int, started_at: datetime, summary: dict, tip: Sequence[SuiteResult]) -> int:
        cursor = self._db.execute(
            "INSERT INTO test_runs (series_id, started_at, finished_at, summary, tip_results) VALUES (?, ?, ?, ?, ?)",
            (series_id, _iso(started_at), _iso(datetime.now(timezone.utc)), json.dumps(summary),
             json.dumps([_result_json(result) for result in tip])),
        )
        return cursor.lastrowid

    def latest_test_run(self, series_id: int) -> StoredTestRun | None:
        runs = self._test_runs(series_id)
        return runs[0] if runs else None

    def test_run(self, run_id: int) -> StoredTestRun | None:
        row = self._db.execute("SELECT series_id FROM test_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return next(run for run in self._test_runs(row[0]) if run.id == run_id)

    def summaries_before(self, series_id: int, run_id: int | None = None) -> list[dict]:
        """The summaries of a series' test runs (those before run `run_id`, when given), newest first."""
        rows = self._db.execute(
            "SELECT summary FROM test_runs WHERE series_id = ? AND id < ? ORDER BY id DESC",
            (series_id, run_id if run_id is not None else 2**62),
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def _test_runs(self, series_id: int) -> list[StoredTestRun]:
        rows = self._db.execute(
            "SELECT id, series_id, started_at, finished_at, summary, tip_results FROM test_runs"
            " WHERE series_id = ? ORDER BY id DESC", (series_id,),
        ).fetchall()
        return [StoredTestRun(id=row[0], series_id=row[1], started_at=_moment(row[2]), finished_at=_moment(row[3]),
                              summary=json.loads(row[4]), tip=tuple(_result_from(item) for item in json.loads(row[5])))
                for row in rows]

    def request_test(self, series_id: int, reason: str, base_ref: str | None = None, first_only: bool = False,
                     suite: str | None = None) -> TestRequest | None:
        """Ask for a test of a series; with first_only, only if it was never asked (None otherwise)."""
        number = self._db.execute(
            "SELECT coalesce(max(number), 0) + 1 FROM test_requests WHERE series_id = ?", (series_id,)
        ).fetchone()[0]
        if first_only and number > 1:
            return None
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO test_requests (series_id, number, base_ref, reason, created_at, suite)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (series_id, number, base_ref, reason, _iso(datetime.now(timezone.utc)), suite),
        )
        return TestRequest(cursor.lastrowid, series_id, number, base_ref, reason, suite) if cursor.rowcount else None

    def pending_test_requests(self) -> list[TestRequest]:
        rows = self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM test_requests WHERE done_at IS NULL ORDER BY id"
        ).fetchall()
        return [_test_request(row) for row in rows]

    def claim_test_request(self, now: datetime, claimer: str, lease: timedelta,
                           claimer_alive: Callable[[str], bool]) -> TestRequest | None:
        """Claim the oldest open request that is due and free, and return it (None: nothing to do).

        A request is free when nobody claimed it, its lease ended, or its claimer is known to
        be dead (a crash). Requests of a series wait while another of the same series runs, so
        that a retest never overtakes the test it follows."""
        with self.transaction():
            rows = self._db.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM test_requests WHERE done_at IS NULL ORDER BY id"
            ).fetchall()
            busy: set[int] = set()
            for row in rows:
                request = _test_request(row)
                held = request.claimed_by is not None and request.claimed_until > now and claimer_alive(request.claimed_by)
                if held or request.series_id in busy:
                    busy.add(request.series_id)
                    continue
                busy.add(request.series_id)
                if request.next_attempt_at is not None and request.next_attempt_at > now:
                    continue
                self._db.execute(
                    "UPDATE test_requests SET claimed_by = ?, claimed_until = ?, started_at = ? WHERE id = ?",
                    (claimer, _iso(now + lease), _iso(now), request.id),
                )
                return self.test_request(request.id)
        return None

    def test_request(self, request_id: int) -> TestRequest | None:
        row = self._db.execute(f"SELECT {_REQUEST_COLUMNS} FROM test_requests WHERE id = ?", (request_id,)).fetchone()
        return _test_request(row) if row else None

    def renew_test_claims(self, claimer: str, until: datetime, request_ids: Sequence[int] | None = None) -> None:
        """Extend the leases of the requests a live worker is still running (only `request_ids`,
        when given: a claim whose worker ended without letting go must lapse, not live on)."""
        if request_ids is None:
            self._db.execute("UPDATE test_requests SET claimed_until = ? WHERE claimed_by = ? AND done_at IS NULL",
                             (_iso(until), claimer))
            return
        self._db.executemany(
            "UPDATE test_requests SET claimed_until = ? WHERE id = ? AND claimed_by = ? AND done_at IS NULL",
            [(_iso(until), request_id, claimer) for request_id in request_ids])

    def retry_test_request(self, request_id: int, claimer: str, error: str, next_attempt_at: datetime) -> bool:
        """A run that could not start or could not judge (the machine's failure): let go of it until
        `next_attempt_at`. False if `claimer` no longer holds it."""
        cursor = self._db.execute(
            "UPDATE test_requests SET claimed_by = NULL, claimed_until = NULL, attempts = attempts + 1,"
            " last_error = ?, next_attempt_at = ? WHERE id = ? AND claimed_by = ?",
            (error, _iso(next_attempt_at), request_id, claimer),
        )
        return bool(cursor.rowcount)

    def give_up_test_request(self, request_id: int, test_run_id: int | None, claimer: str, error: str) -> bool:
        """Close a request whose infrastructure retries are spent, keeping its last error; False if
        `claimer` no longer holds it."""
        now = _iso(datetime.now(timezone.utc))
        cursor = self._db.execute(
            "UPDATE test_requests SET done_at = ?, given_up_at = ?, test_run_id = ?, attempts = attempts + 1,"
            " last_error = ?, claimed_by = NULL, claimed_until = NULL WHERE id = ? AND done_at IS NULL AND claimed_by = ?",
            (now, now, test_run_id, error, request_id, claimer),
        )
        return bool(cursor.rowcount)

    def given_up_test_requests(self) -> list[TestRequest]:
        """Requests given up whose series has had no test request finished since: the operator's to see."""
        rows = self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM test_requests r WHERE given_up_at IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM test_requests later WHERE later.series_id = r.series_id AND later.number > r.number"
            "  AND later.done_at IS NOT NULL AND later.given_up_at IS NULL) ORDER BY id"
        ).fetchall()
        return [_test_request(row) for row in rows]

    def finish_test_request(self, request_id: int, test_run_id: int | None, claimer: str | None = None) -> bool:
        """Close a request; with `claimer`, only while that claimer still holds it (False if not)."""
        cursor = self._db.execute(
            "UPDATE test_requests SET done_at = ?, test_run_id = ?, claimed_by = NULL, claimed_until = NULL"
            " WHERE id = ? AND done_at IS NULL AND (? IS NULL OR claimed_by = ?)",
            (_iso(datetime.now(timezone.utc)), test_run_id, request_id, claimer, claimer),
        )
        return bool(cursor.rowcount)

    def request_reasons(self, series_id: int) -> list[str]:
        return [row[0] for row in self._db.execute(
            "SELECT reason FROM test_requests WHERE series_id = ? ORDER BY number", (series_id,))]

    def last_received(self, series_id: int) -> datetime | None:
        """When the newest patch or cover letter of a series arrived (the grace period for incomplete
        ones counts from it). Replies in its thread do not count: anyone on the list can send one,
        and a reply every few hours would otherwise keep the series from ever being tested."""
        row = self._db.execute(
            "SELECT max(m.received_at) FROM mails m WHERE m.id IN"
            " (SELECT mail_id FROM series_patches WHERE series_id = ? AND inherited = 0"
            "  UNION SELECT cover_mail_id FROM series WHERE id = ?)",
            (series_id, series_id),
        ).fetchone()
        return _moment(row[0])

    def base_result(self, base_commit: str, suite: str, suite_key: str) -> SuiteResult | None:
        row = self._db.execute(
            "SELECT result FROM base_results WHERE base_commit = ? AND suite = ? AND suite_key = ?",
            (base_commit, suite, suite_key),
        ).fetchone()
        return _result_from(json.loads(row[0])) if row else None

    def base_results_of(self, base_commit: str) -> list[SuiteResult]:
        """Every kept base result of one commit, whatever its suite key (bench/aurweb's table)."""
        rows = self._db.execute("SELECT result FROM base_results WHERE base_commit = ? ORDER BY rowid", (base_commit,))
        return [_result_from(json.loads(row[0])) for row in rows.fetchall()]

    def keep_base_result(self, base_commit: str, suite_key: str, result: SuiteResult) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO base_results (base_commit, suite, suite_key, result) VALUES (?, ?, ?, ?)",
            (base_commit, result.suite, suite_key, json.dumps(_result_json(result))),
        )

    def clear_base_results(self, base_commit: str | None = None, suite: str | None = None) -> int:
        """Forget kept base results (of one base commit, by prefix, and/or one suite): how many."""
        cursor = self._db.execute(
            "DELETE FROM base_results WHERE (? IS NULL OR base_commit LIKE ? || '%') AND (? IS NULL OR suite = ?)",
            (base_commit, base_commit, suite, suite),
        )
        return cursor.rowcount

    def trust_dependencies(self, series_id: int, environment: str, files_digest: str, by: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO trusted_dependencies (series_id, environment, files_digest, trusted_by, trusted_at)"
            " VALUES (?, ?, ?, ?, ?)", (series_id, environment, files_digest, by, _iso(datetime.now(timezone.utc))),
        )

    def trusted_dependencies(self, series_id: int) -> set[tuple[str, str]]:
        """(environment, files digest) pairs a maintainer trusted for this series version."""
        return set(self._db.execute(
            "SELECT environment, files_digest FROM trusted_dependencies WHERE series_id = ?", (series_id,)).fetchall())
