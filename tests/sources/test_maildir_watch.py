"""The Maildir watcher on real folders: stored, then moved to cur/ as seen; a crash re-reads, never twice."""

from __future__ import annotations

import logging
import mailbox
import sqlite3
from pathlib import Path

import pytest

from patchbot.config.records import MaildirSourceConfig
from patchbot.sources import UnreadableSource
from patchbot.sources.maildir import MaildirWatcher
from patchbot.store.database import Store

MAIL = b"From: Jane Doe <jane@example.org>\nSubject: [PATCH] doc: note\nMessage-Id: <md.{n}@example.org>\n\nbody\n"


def mail(number: int) -> bytes:
    return MAIL.replace(b"{n}", str(number).encode())


@pytest.fixture
def maildir(tmp_path) -> Path:
    mailbox.Maildir(tmp_path / "Maildir", create=True)
    return tmp_path / "Maildir"


@pytest.fixture
def watcher(maildir) -> MaildirWatcher:
    return MaildirWatcher(MaildirSourceConfig(maildir))


def deliver(maildir: Path, data: bytes) -> str:
    """As procmail does: written in tmp/, renamed into new/ (mailbox.Maildir.add does both)."""
    return mailbox.Maildir(maildir, create=False).add(data)


def names_in(maildir: Path, sub: str) -> list[str]:
    return sorted(path.name for path in (maildir / sub).iterdir())


def test_new_mails_are_stored_and_moved_to_cur_as_seen(maildir, watcher, store, caplog):
    first, second = deliver(maildir, mail(1)), deliver(maildir, mail(2))
    with caplog.at_level(logging.INFO):
        assert watcher.poll_once(store) == 2
    assert store.raw_mail(store.mail("<md.1@example.org>").id) == mail(1)
    assert f"stored <md.1@example.org> ({len(mail(1))} bytes)" in caplog.text
    assert names_in(maildir, "new") == []
    assert names_in(maildir, "cur") == sorted([f"{first}:2,S", f"{second}:2,S"])
    assert watcher.poll_once(store) == 0


def test_a_mail_stored_before_a_crash_but_still_in_new_is_not_stored_twice(maildir, watcher, store):
    key = deliver(maildir, mail(3))
    assert watcher.poll_once(store) == 1
    # The crash came between storing and moving: put it back in new/.
    (maildir / "cur" / f"{key}:2,S").rename(maildir / "new" / key)
    assert watcher.poll_once(store) == 0
    assert store.count_mails() == {"new": 1}
    assert names_in(maildir, "new") == []


def test_a_malformed_mail_is_still_stored(maildir, watcher, store):
    deliver(maildir, b"\xff\xfe not a mail at all")
    assert watcher.poll_once(store) == 1
    assert store.count_mails() == {"new": 1}


def test_a_store_failure_leaves_the_mail_in_new_for_the_next_poll(maildir, watcher, store):
    key = deliver(maildir, mail(4))
    broken = Store(store.path)
    broken.close()  # every write now fails, as a store whose file went away would
    with pytest.raises(sqlite3.Error):
        watcher.poll_once(broken)
    assert names_in(maildir, "new") == [key]
    assert watcher.poll_once(store) == 1


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_a_file_that_cannot_be_read_is_logged_and_left_and_the_others_are_stored(maildir, watcher, store, caplog):
    # Reading /proc/self/mem from its start fails with EIO, as a failing disk would; a file
    # without read permission would not do here, since the tests may run as root.
    unreadable = maildir / "new" / "1.unreadable.host"
    unreadable.symlink_to("/proc/self/mem")
    deliver(maildir, mail(5))
    with caplog.at_level(logging.INFO):
        assert watcher.poll_once(store) == 1
    assert f"cannot read {unreadable}: Input/output error" in caplog.text
    assert "stored <md.5@example.org>" in caplog.text
    assert names_in(maildir, "new") == [unreadable.name]


def test_a_folder_that_is_not_a_maildir_is_named_in_the_error(tmp_path):
    with pytest.raises(UnreadableSource, match=f"{tmp_path / 'nowhere'} is not a Maildir: it has no new/ folder"):
        MaildirWatcher(MaildirSourceConfig(tmp_path / "nowhere"))
