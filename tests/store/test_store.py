"""The SQLite store: schema versions, one record per Message-ID, recovery of half-done work."""

from __future__ import annotations

import sqlite3

import pytest

from patchbot.series.intake import Status, file_new_mails, keep, take_in
from patchbot.mail import synthetic_message_id
from patchbot.sources import RawMail
from patchbot.store.connection import StoreError
from patchbot.store.database import Store
from patchbot.store.migrations import MIGRATIONS

MAIL = b"From: A <a@example.org>\nSubject: [PATCH] x\nMessage-Id: <m1@example.org>\n\nbody\n"


def test_a_new_database_gets_the_latest_schema(tmp_path):
    store = Store(tmp_path / "p.db")
    assert store.schema_version == len(MIGRATIONS)


def test_a_database_from_a_newer_patchbot_is_refused(tmp_path):
    path = tmp_path / "p.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this patchbot knows"):
        Store(path)


def test_reopening_keeps_everything(tmp_path):
    store = Store(tmp_path / "p.db")
    take_in(store, RawMail(MAIL, "test"))
    store.close()
    again = Store(tmp_path / "p.db")
    assert again.mail("<m1@example.org>").status == "filed"
    assert again.raw_mail(again.mail("<m1@example.org>").id) == MAIL


def test_one_record_per_message_id(tmp_path):
    store = Store(tmp_path / "p.db")
    assert take_in(store, RawMail(MAIL, "a")).status is Status.FILED
    assert take_in(store, RawMail(MAIL.replace(b"body", b"other body"), "b")).status is Status.KNOWN
    assert store.count_mails() == {"other": 1}


def test_a_mail_without_message_id_gets_a_stable_synthetic_one(tmp_path):
    data = b"From: A <a@example.org>\nSubject: hello\n\nbody\n"
    store = Store(tmp_path / "p.db")
    first = take_in(store, RawMail(data, "a"))
    assert first.message_id == synthetic_message_id(data)
    assert take_in(store, RawMail(data.replace(b"\n", b"\r\n"), "lmtp")).status is Status.KNOWN
    assert store.mail(first.message_id).synthetic_id


def test_mails_kept_but_not_filed_before_a_crash_are_filed_later(tmp_path):
    store = Store(tmp_path / "p.db")
    with store.transaction():
        message_id, mail_id = keep(store, RawMail(MAIL, "lmtp"))
    assert store.mail(message_id).status == "new"
    store.close()
    store = Store(tmp_path / "p.db")
    outcomes = file_new_mails(store)
    assert [outcome.status for outcome in outcomes] == [Status.FILED]
    assert store.mail(message_id).status == "filed"
    assert file_new_mails(store) == []


def test_a_failed_nested_step_is_undone_alone(tmp_path):
    store = Store(tmp_path / "p.db")
    with store.transaction():
        store.add_mail("<kept@x>", False, b"x", "t")
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.add_mail("<undone@x>", False, b"y", "t")
                raise RuntimeError("boom")
    assert store.has_mail("<kept@x>") and not store.has_mail("<undone@x>")


def test_versions_superseded_under_schema_5_stay_unanswered_after_the_upgrade(tmp_path):
    """Schema 6 answers a version superseded before its test; older ones must not all be
    answered at once by the first run after an upgrade."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for migration in MIGRATIONS[:5]:
        db.executescript(migration)
    db.executescript(
        "INSERT INTO series (id, title, normalised_title, author, author_name, version, total, date, obsolete)"
        " VALUES (1, 'fix', 'fix', 'a@x', 'A', 1, 1, '2021-03-01T00:00:00+00:00', 1),"
        "        (2, 'fix', 'fix', 'a@x', 'A', 2, 1, '2021-03-02T00:00:00+00:00', 0);"
        "PRAGMA user_version = 5;")
    db.close()
    store = Store(path)
    assert store.request_reasons(1) == ["superseded before it was tested (kept from schema 5)"]
    assert store.request_reasons(2) == [] and store.pending_test_requests() == []
