"""The IMAP poller against a real Dovecot on loopback: stored first, \\Seen after, never the password in a log."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from dovecot import NOT_INSTALLED, dovecot_server, installed

from patchbot.config import ImapSourceConfig
from patchbot.demo import free_port
from patchbot.sources.imap import ImapPoller, ImapUnavailable
from patchbot.store import Store, StoreError

pytestmark = pytest.mark.skipif(not installed(), reason=NOT_INSTALLED)


def mail(number: int) -> bytes:
    return (f"From: Jane Doe <jane@example.org>\r\nTo: aur-dev@lists.archlinux.org\r\n"
            f"Subject: [PATCH] doc: note {number}\r\nMessage-Id: <imap.{number}@example.org>\r\n\r\n"
            f"diff --git a/x b/x\r\n--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-a\r\n+{number}\r\n").encode()


@pytest.fixture(scope="module")
def dovecot():
    with dovecot_server() as server:
        yield server


@pytest.fixture
def folder(dovecot):
    """A fresh IMAP folder per test, so tests do not see each other's mail."""
    name = f"list{free_port()}"
    client = dovecot.client()
    assert client.create(name)[0] == "OK"
    client.logout()
    return name


def settings(dovecot, folder: str, **changes) -> ImapSourceConfig:
    values = dict(host=dovecot.host, port=dovecot.imaps_port, username=dovecot.user, password_file=dovecot.password_file,
                  security="tls", folder=folder, ca_file=dovecot.ca_file, timeout_s=10)
    values.update(changes)
    return ImapSourceConfig(**values)


def seen(flags: list[str]) -> list[bool]:
    return ["\\Seen" in line for line in flags]


def test_unseen_mails_are_stored_then_marked_seen_and_seen_ones_left_alone(dovecot, folder, tmp_path):
    dovecot.append(mail(1), folder)
    dovecot.append(mail(2), folder, flags="(\\Seen)")  # read by a person: not the bot's
    dovecot.append(mail(3), folder)
    store = Store(tmp_path / "p.db")
    poller = ImapPoller(settings(dovecot, folder))
    assert poller.poll_once(store) == 2
    assert store.raw_mail(store.mail("<imap.1@example.org>").id) == mail(1)
    assert store.mail("<imap.2@example.org>") is None
    assert seen(dovecot.flags(folder)) == [True, True, True]
    assert poller.poll_once(store) == 0  # nothing new, the connection reused
    dovecot.append(mail(4), folder)
    assert poller.poll_once(store) == 1
    poller.close()


def test_a_mail_stored_before_a_crash_but_not_marked_seen_is_not_stored_twice(dovecot, folder, tmp_path):
    dovecot.append(mail(5), folder)
    store = Store(tmp_path / "p.db")
    poller = ImapPoller(settings(dovecot, folder))
    assert poller.poll_once(store) == 1
    client = dovecot.client()  # as if the crash came before STORE \Seen
    client.select(folder)
    client.store("1", "-FLAGS", "(\\Seen)")
    client.logout()
    assert poller.poll_once(store) == 0
    assert seen(dovecot.flags(folder)) == [True]
    assert store.count_mails() == {"new": 1}


def test_a_store_that_cannot_write_leaves_the_mail_unseen_for_the_next_poll(dovecot, folder, tmp_path):
    dovecot.append(mail(6), folder)
    store = Store(tmp_path / "p.db")
    blocker = sqlite3.connect(tmp_path / "p.db", timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    store._db.execute("PRAGMA busy_timeout = 100")
    poller = ImapPoller(settings(dovecot, folder))
    with pytest.raises((StoreError, sqlite3.OperationalError)):
        poller.poll_once(store)
    assert seen(dovecot.flags(folder)) == [False]
    blocker.rollback()
    assert ImapPoller(settings(dovecot, folder)).poll_once(store) == 1
    assert seen(dovecot.flags(folder)) == [True]


def test_starttls_on_the_plain_port_works(dovecot, folder, tmp_path):
    dovecot.append(mail(7), folder)
    poller = ImapPoller(settings(dovecot, folder, port=dovecot.imap_port, security="starttls"))
    assert poller.poll_once(Store(tmp_path / "p.db")) == 1


def test_a_wrong_password_is_a_clear_error_that_never_shows_a_password(dovecot, folder, tmp_path, caplog):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-93b1\n")
    poller = ImapPoller(settings(dovecot, folder, password_file=wrong))
    with caplog.at_level(logging.DEBUG), pytest.raises(ImapUnavailable, match="login refused") as refused:
        poller.poll_once(Store(tmp_path / "p.db"))
    everything = str(refused.value) + caplog.text
    assert "not-the-password-93b1" not in everything and dovecot.password not in everything
    assert f"patchbot@127.0.0.1/{folder}" in str(refused.value)


def test_a_certificate_we_do_not_trust_and_a_closed_port_are_clear_errors(dovecot, folder, tmp_path):
    store = Store(tmp_path / "p.db")
    with pytest.raises(ImapUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        ImapPoller(settings(dovecot, folder, ca_file=None)).poll_once(store)
    with pytest.raises(ImapUnavailable, match="refused"):
        ImapPoller(settings(dovecot, folder, port=free_port())).poll_once(store)


def test_a_missing_folder_is_a_clear_error(dovecot, tmp_path):
    with pytest.raises(ImapUnavailable, match="SELECT no-such-folder"):
        ImapPoller(settings(dovecot, "no-such-folder")).poll_once(Store(tmp_path / "p.db"))
