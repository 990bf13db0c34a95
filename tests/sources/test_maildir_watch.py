"""The Maildir watcher on real folders: stored, then moved to cur/ as seen; a crash re-reads, never twice."""

from __future__ import annotations

import mailbox

import pytest

from patchbot.config import MaildirSourceConfig
from patchbot.sources import UnreadableSource
from patchbot.sources.maildir import MaildirWatcher
from patchbot.store import Store

MAIL = b"From: Jane Doe <jane@example.org>\nSubject: [PATCH] doc: note\nMessage-Id: <md.{n}@example.org>\n\nbody\n"


def mail(number: int) -> bytes:
    return MAIL.replace(b"{n}", str(number).encode())


@pytest.fixture
def maildir(tmp_path):
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    yield box


def deliver(box: mailbox.Maildir, data: bytes) -> str:
    """As procmail does: written in tmp/, renamed into new/ (mailbox.Maildir.add does both)."""
    return box.add(data)


def test_new_mails_are_stored_and_moved_to_cur_as_seen(maildir, tmp_path):
    deliver(maildir, mail(1))
    deliver(maildir, mail(2))
    store = Store(tmp_path / "p.db")
    watcher = MaildirWatcher(MaildirSourceConfig(tmp_path / "Maildir"))
    assert watcher.poll_once(store) == 2
    assert store.raw_mail(store.mail("<md.1@example.org>").id) == mail(1)
    assert list((tmp_path / "Maildir" / "new").iterdir()) == []
    assert sorted(path.name.endswith(":2,S") for path in (tmp_path / "Maildir" / "cur").iterdir()) == [True, True]
    assert watcher.poll_once(store) == 0


def test_a_mail_stored_before_a_crash_but_still_in_new_is_not_stored_twice(maildir, tmp_path):
    key = deliver(maildir, mail(3))
    store = Store(tmp_path / "p.db")
    watcher = MaildirWatcher(MaildirSourceConfig(tmp_path / "Maildir"))
    assert watcher.poll_once(store) == 1
    # The crash came between storing and moving: put it back in new/.
    moved = next((tmp_path / "Maildir" / "cur").iterdir())
    moved.rename(tmp_path / "Maildir" / "new" / key)
    assert watcher.poll_once(store) == 0
    assert store.count_mails() == {"new": 1}
    assert list((tmp_path / "Maildir" / "new").iterdir()) == []


def test_a_malformed_mail_is_still_stored(maildir, tmp_path):
    deliver(maildir, b"\xff\xfe not a mail at all")
    store = Store(tmp_path / "p.db")
    assert MaildirWatcher(MaildirSourceConfig(tmp_path / "Maildir")).poll_once(store) == 1
    assert store.count_mails() == {"new": 1}


def test_a_store_failure_leaves_the_mail_in_new_for_the_next_poll(maildir, tmp_path):
    import sqlite3

    deliver(maildir, mail(4))
    store = Store(tmp_path / "p.db")
    watcher = MaildirWatcher(MaildirSourceConfig(tmp_path / "Maildir"))
    blocker = sqlite3.connect(tmp_path / "p.db", timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    store._db.execute("PRAGMA busy_timeout = 100")
    with pytest.raises(sqlite3.OperationalError):
        watcher.poll_once(store)
    assert len(list((tmp_path / "Maildir" / "new").iterdir())) == 1
    blocker.rollback()
    assert watcher.poll_once(store) == 1


def test_a_folder_that_is_not_a_maildir_is_named_in_the_error(tmp_path):
    with pytest.raises(UnreadableSource, match=f"{tmp_path / 'nowhere'} is not a Maildir"):
        MaildirWatcher(MaildirSourceConfig(tmp_path / "nowhere"))
