"""The IMAP poller against a real Dovecot on loopback: stored first, \\Seen after, never the password in a log."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from dovecot import NOT_INSTALLED, dovecot_server, installed

from patchbot.config.records import ImapSourceConfig
from patchbot.demo.run import free_port
from patchbot.sources.imap import ImapPoller, ImapUnavailable
from patchbot.store.database import Store

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


@pytest.fixture
def poller_for(dovecot, folder):
    """Makes pollers of the test's folder over IMAPS, with settings changed; logs them out after."""
    pollers = []

    def poller_for(**changes) -> ImapPoller:
        values = dict(host=dovecot.host, port=dovecot.imaps_port, username=dovecot.user, security="tls",
                      password_file=dovecot.password_file, folder=folder, ca_file=dovecot.ca_file, timeout_s=10)
        pollers.append(ImapPoller(ImapSourceConfig(**values | changes)))
        return pollers[-1]

    yield poller_for
    for poller in pollers:
        poller.close()


def seen(flags: list[str]) -> list[bool]:
    return ["\\Seen" in line for line in flags]


def test_unseen_mails_are_stored_then_marked_seen_and_seen_ones_left_alone(dovecot, folder, poller_for, store, caplog):
    dovecot.append(mail(1), folder)
    dovecot.append(mail(2), folder, flags="(\\Seen)")  # read by a person: not the bot's
    dovecot.append(mail(3), folder)
    poller = poller_for()
    with caplog.at_level(logging.DEBUG):
        assert poller.poll_once(store) == 2
        assert store.raw_mail(store.mail("<imap.1@example.org>").id) == mail(1)
        assert store.mail("<imap.2@example.org>") is None
        assert seen(dovecot.flags(folder)) == [True, True, True]
        assert poller.poll_once(store) == 0  # nothing new, the connection reused
        dovecot.append(mail(4), folder)
        assert poller.poll_once(store) == 1
        poller.close()
    assert f"stored <imap.1@example.org> ({len(mail(1))} bytes)" in caplog.text
    assert dovecot.password not in caplog.text


def test_a_mail_stored_before_a_crash_but_not_marked_seen_is_not_stored_twice(dovecot, folder, poller_for, store):
    dovecot.append(mail(5), folder)
    poller = poller_for()
    assert poller.poll_once(store) == 1
    client = dovecot.client()  # as if the crash came before STORE \Seen
    client.select(folder)
    client.store("1", "-FLAGS", "(\\Seen)")
    client.logout()
    assert poller.poll_once(store) == 0
    assert seen(dovecot.flags(folder)) == [True]
    assert store.count_mails() == {"new": 1}


def test_a_store_failure_leaves_the_mail_unseen_and_the_next_poll_takes_it(dovecot, folder, poller_for, store):
    dovecot.append(mail(6), folder)
    broken = Store(store.path)
    broken.close()  # every write now fails, as a store whose file went away would
    poller = poller_for()
    with pytest.raises(sqlite3.Error):
        poller.poll_once(broken)
    assert seen(dovecot.flags(folder)) == [False]
    assert poller.poll_once(store) == 1  # on the same connection, kept
    assert seen(dovecot.flags(folder)) == [True]


def test_a_connection_the_server_dropped_is_reopened_without_an_error(dovecot, folder, poller_for, store, caplog):
    poller = poller_for()
    assert poller.poll_once(store) == 0
    dovecot.kick()  # as the server's autologout or a NAT forgetting an idle connection would
    dovecot.append(mail(8), folder)
    with caplog.at_level(logging.INFO):
        assert poller.poll_once(store) == 1
    assert "was dropped" in caplog.text


@pytest.mark.parametrize("security", ["starttls", "plain"])
def test_the_plain_port_works_with_starttls_and_without(dovecot, folder, poller_for, store, security):
    dovecot.append(mail(7), folder)
    assert poller_for(port=dovecot.imap_port, security=security).poll_once(store) == 1


def test_a_wrong_password_is_a_clear_error_that_never_shows_a_password(dovecot, folder, poller_for, store, tmp_path, caplog):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-93b1\n")
    with caplog.at_level(logging.DEBUG), pytest.raises(ImapUnavailable, match="login refused") as refused:
        poller_for(password_file=wrong).poll_once(store)
    everything = str(refused.value) + caplog.text
    assert "not-the-password-93b1" not in everything and dovecot.password not in everything
    assert f"patchbot@127.0.0.1/{folder}" in str(refused.value)


def test_an_untrusted_certificate_a_closed_port_and_a_missing_password_file_are_clear_errors(poller_for, store, tmp_path):
    with pytest.raises(ImapUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        poller_for(ca_file=None).poll_once(store)
    with pytest.raises(ImapUnavailable, match="Connection refused"):
        poller_for(port=free_port()).poll_once(store)
    with pytest.raises(ImapUnavailable, match=f"cannot read the password file {tmp_path / 'nowhere'}"):
        poller_for(password_file=tmp_path / "nowhere").poll_once(store)


def test_a_missing_folder_is_a_clear_error(poller_for, store):
    with pytest.raises(ImapUnavailable, match="SELECT no-such-folder"):
        poller_for(folder="no-such-folder").poll_once(store)
