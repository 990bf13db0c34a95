"""Test requests as durable jobs: claims under a lease, dead claimers, order within a series, retries."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

from patchbot.store.claims import CLAIMER, claimer_alive

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
LEASE = timedelta(minutes=10)


def _series(store, title="fix"):
    with store.transaction():
        return store.add_series(title=title, normalised_title=title, author="a@example.org", author_name="A",
                                version=1, total=1, date=NOW)


def _claim(store, claimer="me", now=NOW, alive=lambda claimer: True):
    with store.transaction():
        return store.claim_test_request(now, claimer, LEASE, alive)


def test_a_request_is_claimed_once_and_closed_by_its_claimer_only(store):
    series = _series(store)
    with store.transaction():
        store.request_test(series, "complete series")
    request = _claim(store)
    assert request.claimed_by == "me" and request.claimed_until == NOW + LEASE
    assert _claim(store, "other") is None  # held: nobody else gets it
    with store.transaction():
        assert not store.finish_test_request(request.id, None, "other")
        assert store.finish_test_request(request.id, None, "me")
    assert store.pending_test_requests() == []
    assert _claim(store) is None


def test_a_lapsed_lease_or_a_dead_claimer_frees_the_request(store):
    series = _series(store)
    with store.transaction():
        store.request_test(series, "complete series")
    first = _claim(store, "worker-1")
    assert _claim(store, "worker-2", now=NOW + LEASE + timedelta(seconds=1)).id == first.id
    assert _claim(store, "worker-3", alive=lambda claimer: claimer != "worker-2").claimed_by == "worker-3"
    with store.transaction():  # the first claimer finishing late changes nothing
        assert not store.finish_test_request(first.id, None, "worker-1")


def test_renewing_keeps_a_long_test_claimed(store):
    series = _series(store)
    with store.transaction():
        store.request_test(series, "complete series")
    request = _claim(store)
    with store.transaction():
        store.renew_test_claims("me", NOW + 3 * LEASE)
    assert _claim(store, "other", now=NOW + 2 * LEASE) is None
    assert store.test_request(request.id).claimed_until == NOW + 3 * LEASE


def test_a_retest_waits_for_the_test_before_it_but_other_series_do_not(store):
    one, two = _series(store, "one"), _series(store, "two")
    with store.transaction():
        store.request_test(one, "complete series")
        store.request_test(one, "retest")
        store.request_test(two, "complete series")
    first = _claim(store, "w1")
    second = _claim(store, "w2")
    assert (first.series_id, first.number) == (one, 1)
    assert (second.series_id, second.number) == (two, 1)  # not one's retest
    assert _claim(store, "w3") is None


def test_a_run_that_could_not_start_waits_and_counts_its_attempts(store):
    series = _series(store)
    with store.transaction():
        store.request_test(series, "complete series")
    request = _claim(store)
    with store.transaction():
        store.retry_test_request(request.id, "me", "cannot fetch", NOW + timedelta(minutes=1))
    assert _claim(store, now=NOW + timedelta(seconds=30)) is None
    again = _claim(store, now=NOW + timedelta(minutes=2))
    assert (again.attempts, again.last_error) == (1, "cannot fetch")


def test_claimer_alive_tells_a_dead_process_and_a_reused_pid():
    assert claimer_alive(CLAIMER)
    child = subprocess.run([sys.executable, "-c", "from patchbot.store.claims import CLAIMER; print(CLAIMER)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert not claimer_alive(child)
    host, pid, start = CLAIMER.split(":")
    assert not claimer_alive(f"{host}:{pid}:{int(start) + 1}")  # our pid, another process's start
    assert claimer_alive(f"elsewhere.example.org:{pid}:1")  # another machine: only its lease tells


def test_a_claim_no_worker_still_runs_lapses_though_its_process_lives(store):
    """A worker whose run raised and whose release failed (a full disk) leaves its claim behind;
    the service renews only the requests its workers still run, so that claim lapses."""
    series = _series(store)
    with store.transaction():
        store.request_test(series, "complete series")
        store.request_test(_series(store, "other"), "complete series")
    left, running = _claim(store), _claim(store)
    with store.transaction():
        store.renew_test_claims("me", NOW + 3 * LEASE, [running.id])
    assert store.test_request(running.id).claimed_until == NOW + 3 * LEASE
    assert store.test_request(left.id).claimed_until == NOW + LEASE
    taken = _claim(store, "me", now=NOW + LEASE + timedelta(seconds=1))  # "me" lives on
    assert taken.id == left.id
