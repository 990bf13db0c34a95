"""Delivering the outbox: deferrals retried with backoff, refusals, a server down, crashes, dry run.

The replies are real: the sample aur-dev mails are tested once per module (in bwrap) with the send
stage left out, which leaves five replies pending; each test sends a copy of that database to a
real SMTP server on 127.0.0.1 that defers, refuses or accepts as the test needs. The crash tests
run `patchbot run` in a subprocess and SIGKILL it at a chosen point.
"""

from __future__ import annotations

import mailbox
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from outbox_support import aurweb_repo  # noqa: F401 - a module-scoped fixture: the sample repository
from outbox_support import (
    BOT, LIST, SERIES_THREADS, Blackhole, Bot, Handler, cli_ok, outbox_rows, parse, query, sample_mails,
    smtp_server, split_before_v2, wait_for, write_config, write_mail_files,
)
from patchbot.config.load import load_config
from patchbot.demo.run import free_port
from patchbot.reply.outbox import Delivery, send_due
from patchbot.store.database import Store

AUTHORS = tuple(sorted({address for _, address in SERIES_THREADS.values()}))


@pytest.fixture(scope="module")
def queued_db(aurweb_repo, tmp_path_factory) -> Path:
    """A database where the sample's five series were tested and their replies wait in the outbox."""
    folder = tmp_path_factory.mktemp("queued")
    bot = Bot(write_config(folder, aurweb_repo, free_port()))
    bot.feed(sample_mails(), send=False)
    assert [(row.status, row.attempts) for row in bot.store.replies()] == [("pending", 0)] * 5
    bot.close()
    return folder / "patchbot.db"


@pytest.fixture
def outbox(queued_db, aurweb_repo, tmp_path):
    """make(port, **smtp) -> (store, config): a copy of the queued database, a config for it."""
    stores = []

    def make(port: int, **smtp):
        db = tmp_path / "patchbot.db"
        if not db.exists():
            source, target = sqlite3.connect(queued_db), sqlite3.connect(db)
            source.backup(target)
            source.close(), target.close()
        config = load_config(write_config(tmp_path, aurweb_repo, port, db=db, **smtp))
        store = Store(db)
        stores.append(store)
        return store, config

    yield make
    for store in stores:
        store.close()


def next_attempts(store: Store) -> dict[str, datetime]:
    rows = query(store.path, "SELECT message_id, next_attempt_at FROM outbox")
    return {message_id: datetime.fromisoformat(moment) for message_id, moment in rows}


def send_until_settled(store: Store, config, timeout: float = 30) -> list:
    """send_due again and again (sleeping past the backoff) until nothing is pending."""
    outcomes = []
    deadline = time.monotonic() + timeout
    while store.replies("pending"):
        assert time.monotonic() < deadline, [(row.key, row.attempts, row.last_error) for row in store.replies()]
        outcomes += send_due(store, config)
        time.sleep(0.02)
    return outcomes


def test_deferred_replies_are_retried_with_backoff_and_delivered_once(outbox):
    handler = Handler(fail_data=2)  # "451 4.3.0 Try again later" twice for each mail, then accepted
    with smtp_server(handler) as port:
        store, config = outbox(port, retry_base=0.2)
        assert config.smtp.retry_base_s == 0.2
        ids = [row.message_id for row in store.replies()]

        for attempt, delay in ((1, 0.2), (2, 0.4)):
            before = datetime.now(timezone.utc)
            outcomes = send_due(store, config)
            after = datetime.now(timezone.utc)
            assert [outcome.result for outcome in outcomes] == [Delivery.RETRY] * 5
            rows = store.replies()
            assert [(row.status, row.attempts) for row in rows] == [("pending", attempt)] * 5
            assert all(row.last_error.startswith("451") and "Try again later" in row.last_error for row in rows)
            for moment in next_attempts(store).values():  # base, then twice the base
                assert (before - moment).total_seconds() + delay <= 0 <= (after - moment).total_seconds() + delay + 0.01
            assert send_due(store, config) == []  # not due yet: nothing is tried early
            time.sleep(delay)

        outcomes = send_until_settled(store, config)
    assert [outcome.result for outcome in outcomes] == [Delivery.SENT] * 5
    assert sorted(handler.message_ids()) == sorted(ids)  # each accepted once
    assert handler.data_attempts == {message_id: 3 for message_id in ids}
    assert [(row.status, row.attempts, row.last_error) for row in store.replies()] == [("sent", 3, None)] * 5


def test_a_reply_deferred_past_the_window_is_held_and_goes_out_at_its_hourly_try(outbox):
    handler = Handler(fail_data=3)  # deferred for the whole window (three attempts), then accepted
    with smtp_server(handler) as port:
        store, config = outbox(port, retry_base=0.05, max_attempts=3)
        send_until_settled(store, config)
        held_at = datetime.now(timezone.utc)
        rows = store.replies()
        # Not given up: held, to be tried again in an hour.
        assert [(row.status, row.attempts) for row in rows] == [("held", 3)] * 5
        assert all("451" in row.last_error for row in rows)
        for moment in next_attempts(store).values():
            assert 3600 - 60 <= (moment - held_at).total_seconds() <= 3600
        time.sleep(0.3)
        assert send_due(store, config) == []  # well past the backoff, not yet at the hourly try
        assert handler.messages == []
        outcomes = send_due(store, config, now=held_at + timedelta(seconds=3601))
        assert [outcome.result for outcome in outcomes] == [Delivery.SENT] * 5
    assert sorted(handler.message_ids()) == sorted(row.message_id for row in store.replies())
    assert set(handler.data_attempts.values()) == {4}
    assert [(row.status, row.attempts) for row in store.replies()] == [("sent", 4)] * 5


@pytest.mark.parametrize("where", ["DATA", "RCPT"])
def test_a_permanent_refusal_fails_at_once_and_is_never_retried(outbox, where):
    if where == "DATA":
        handler = Handler(fail_data=1000, fail_reply="550 5.7.1 Message refused by policy")
    else:
        handler = Handler(refuse=(LIST, *AUTHORS))  # every recipient: 550 at RCPT
    with smtp_server(handler) as port:
        store, config = outbox(port, retry_base=0.05)
        outcomes = send_due(store, config)
        assert [outcome.result for outcome in outcomes] == [Delivery.FAILED] * 5
        time.sleep(0.3)  # well past any backoff
        assert send_due(store, config) == []
        assert send_due(store, config, now=datetime(2100, 1, 1, tzinfo=timezone.utc)) == []
    rows = store.replies()
    assert [(row.status, row.attempts) for row in rows] == [("failed", 1)] * 5
    assert all("550" in row.last_error for row in rows)
    assert handler.messages == [] and handler.mail_commands == 5
    if where == "DATA":
        assert set(handler.data_attempts.values()) == {1} and len(handler.data_attempts) == 5


def test_one_refused_recipient_gets_it_noted_and_the_others_get_it_once(outbox):
    handler = Handler(refuse=AUTHORS)  # the list takes it, every author's address is refused
    with smtp_server(handler) as port:
        store, config = outbox(port, retry_base=0.05)
        outcomes = send_due(store, config)
        assert [outcome.result for outcome in outcomes] == [Delivery.SENT] * 5
        time.sleep(0.3)
        assert send_due(store, config) == []
        assert send_due(store, config, now=datetime(2100, 1, 1, tzinfo=timezone.utc)) == []
    assert [(sender, recipients) for sender, recipients, _ in handler.messages] == [(BOT, (LIST,))] * 5
    assert sorted(handler.message_ids()) == sorted(row.message_id for row in store.replies())
    for row in store.replies():
        author = row.recipients[1]
        assert (row.status, row.attempts) == ("sent", 1)
        assert row.recipients[0] == LIST and author in AUTHORS
        assert author in row.last_error and "550" in row.last_error, row.last_error


def test_a_server_that_is_down_defers_and_gets_the_replies_when_it_is_up(outbox):
    port = free_port()  # nothing listens there yet: connection refused
    store, config = outbox(port, retry_base=0.5)
    outcomes = send_due(store, config)
    assert [outcome.result for outcome in outcomes] == [Delivery.RETRY] * 5
    assert [(row.status, row.attempts) for row in store.replies()] == [("pending", 1)] * 5
    assert all(row.last_error for row in store.replies())
    handler = Handler()
    with smtp_server(handler, port):
        assert send_due(store, config) == []  # its time has not come yet
        time.sleep(0.5)
        outcomes = send_until_settled(store, config)
        assert [outcome.result for outcome in outcomes] == [Delivery.SENT] * 5
        time.sleep(0.3)
        assert send_due(store, config) == []
    assert sorted(handler.message_ids()) == sorted(row.message_id for row in store.replies())
    assert [(row.status, row.attempts) for row in store.replies()] == [("sent", 2)] * 5


def test_dry_run_writes_the_replies_to_an_mbox_and_sends_nothing(outbox, tmp_path):
    handler = Handler()
    target = tmp_path / "replies.mbox"
    with smtp_server(handler) as port:
        store, config = outbox(port, dry_run_mbox=str(target))
        assert config.smtp.dry_run_mbox == target
        queued = store.replies()
        store.close()
        counts = cli_ok(config.source, "run")  # the whole pass: nothing to test, five to "send"
        cli_ok(config.source, "run")
    assert handler.messages == [] and handler.mail_commands == 0
    box = mailbox.mbox(target)
    try:
        # The bytes as written: a Message's as_bytes() refolds a line past 78 characters (a long id).
        written = [parse(box.get_bytes(key)) for key in box.keys()]
    finally:
        box.close()
    assert [str(mail["Message-ID"]) for mail in written] == [row.message_id for row in queued]
    for mail, row in zip(written, queued):
        original = parse(row.data)
        for name in ("From", "To", "Cc", "Subject", "In-Reply-To", "References", "Auto-Submitted", "X-Patchbot-Series"):
            assert str(mail[name]) == str(original[name]), name
        assert mail.get_content().replace("\r\n", "\n") == original.get_content().replace("\r\n", "\n")
    assert [row["status"] for row in outbox_rows(config.db)] == ["sent"] * 5, counts


def test_two_passes_at_once_send_each_reply_once(outbox):
    # The server holds DATA until a second sender connects or 10 s pass: were replies not claimed
    # before sending, both passes would be in flight with the same replies.
    handler = Handler(hold_for_sessions=2)
    with smtp_server(handler) as port:
        store, config = outbox(port)
        store.close()
        runs = [subprocess.Popen([sys.executable, "-m", "patchbot", "-c", str(config.source), "run"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
        for run in runs:
            assert run.wait(timeout=120) == 0, run.stderr.read().decode()
    ids = handler.message_ids()
    assert len(ids) == 5 and len(set(ids)) == 5, sorted(ids)


# -- crashes ----------------------------------------------------------------------------------


def start_run(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "patchbot", "-c", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(process: subprocess.Popen, condition, what: str) -> None:
    """SIGKILL `process` (ours, by its pid) as soon as `condition()` holds."""
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"patchbot run ended ({process.returncode}) before {what}: "
                                     + process.stderr.read().decode()[-3000:])
            return condition()

        wait_for(ready, timeout=120, interval=0.005, what=what)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def test_killed_after_the_replies_are_stored_and_before_they_are_sent(aurweb_repo, tmp_path):
    db = tmp_path / "patchbot.db"
    first, second = split_before_v2(sample_mails())
    hole = Blackhole()  # accepts the connection, never greets: the sender waits there
    try:
        config = write_config(tmp_path, aurweb_repo, hole.port)
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", first, "a"))
        process = start_run(config)
        kill_when(process, lambda: bool(hole.connections) and any(row["status"] == "pending" for row in outbox_rows(db) or []),
                  "a connection to the SMTP server with a reply pending")
    finally:
        hole.close()
    # Killed in the send stage: every reply of this pass was stored, none was sent.
    assert [(row["status"], row["attempts"]) for row in outbox_rows(db)] == [("pending", 0)] * 4

    handler = Handler()
    with smtp_server(handler) as port:
        config = write_config(tmp_path, aurweb_repo, port)  # the same files, the real server
        cli_ok(config, "run")
        assert len(handler.messages) == 4
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", second, "b"))
        cli_ok(config, "run")
        cli_ok(config, "run")
    rows = outbox_rows(db)
    ids = handler.message_ids()
    assert len(ids) == len(set(ids)) == len(rows) == 5
    assert set(ids) == {row["message_id"] for row in rows}
    assert [(row["status"], row["attempts"]) for row in rows] == [("sent", 1)] * 5
    assert [str(parse(data)["In-Reply-To"]) for _, _, data in handler.messages] == list(SERIES_THREADS)
    assert query(db, "SELECT count(*) FROM test_runs") == [(5,)]  # the crash did not make a series be tested twice


@pytest.mark.parametrize("moment", ["worktree made", "a suite done"])
def test_killed_while_testing_tests_again_and_replies_once(aurweb_repo, tmp_path, moment):
    db = tmp_path / "patchbot.db"
    worktrees = tmp_path / "work" / "worktrees"
    logs = tmp_path / "work" / "logs"
    if moment == "worktree made":
        condition = lambda: worktrees.is_dir() and any(worktrees.iterdir())  # noqa: E731
    else:  # a suite's log is kept when it ends; the others are still running
        condition = lambda: logs.is_dir() and any(logs.glob("*/*.log"))  # noqa: E731
    handler = Handler()
    with smtp_server(handler) as port:
        config = write_config(tmp_path, aurweb_repo, port)
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", sample_mails()[:1], "a"))  # the PHP fix
        process = start_run(config)
        kill_when(process, condition, moment)
        # Killed during the test: no reply stored, the request still open.
        assert outbox_rows(db) == []
        assert query(db, "SELECT count(*) FROM test_requests WHERE done_at IS NULL") == [(1,)]
        assert query(db, "SELECT count(*) FROM test_runs") == [(0,)]
        assert handler.messages == []

        cli_ok(config, "run")
        cli_ok(config, "run")
    assert [str(parse(data)["In-Reply-To"]) for _, _, data in handler.messages] == ["<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>"]
    assert "every suite passed" in parse(handler.messages[0][2]).get_content()
    assert [(row["status"], row["attempts"]) for row in outbox_rows(db)] == [("sent", 1)]
    assert query(db, "SELECT count(*) FROM test_requests WHERE done_at IS NULL") == [(0,)]
    assert query(db, "SELECT count(*) FROM test_runs") == [(1,)]
    assert list(worktrees.iterdir()) == []  # what the killed run left was cleaned up
