"""Delivery over real LMTP (stdlib smtplib.LMTP, the MTA's side) to patchbot's aiosmtpd server."""

from __future__ import annotations

import smtplib

import pytest

from patchbot.demo.run import free_port
from patchbot.series.intake import Status, file_new_mails
from patchbot.sources.lmtp import LmtpController, LmtpDelivery, LmtpSocketController
from patchbot.store.database import Store

MAIL = (b"From: Jane Doe <jane@example.org>\r\nTo: aur-dev@lists.archlinux.org\r\n"
        b"Subject: [PATCH] rpc: fix\r\nMessage-Id: <lmtp.1@example.org>\r\n\r\n"
        b"diff --git a/x b/x\r\n--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-a\r\n+b\r\n")


@pytest.fixture
def lmtp(tmp_path):
    """Start an LMTP server storing into `db`; yields a function that delivers one mail."""
    started = []

    def start(db):
        port = free_port()
        controller = LmtpController(LmtpDelivery(db), hostname="127.0.0.1", port=port)
        controller.start()
        started.append(controller)

        def deliver(data: bytes) -> None:
            with smtplib.LMTP("127.0.0.1", port) as client:
                client.sendmail("list-bounces@lists.archlinux.org", ["patchbot@example.org"], data)

        return deliver

    yield start
    for controller in started:
        controller.stop()


def test_a_delivered_mail_is_stored_before_250_and_filed_later(lmtp, tmp_path):
    deliver = lmtp(tmp_path / "p.db")
    deliver(MAIL)  # raises unless the server answered 250
    store = Store(tmp_path / "p.db")
    assert store.mail("<lmtp.1@example.org>").status == "new"
    assert store.raw_mail(store.mail("<lmtp.1@example.org>").id) == MAIL
    assert [outcome.status for outcome in file_new_mails(store)] == [Status.FILED]
    assert store.mail("<lmtp.1@example.org>").facts.kind == "patch"


def test_the_same_mail_twice_is_accepted_and_kept_once(lmtp, tmp_path):
    deliver = lmtp(tmp_path / "p.db")
    deliver(MAIL)
    deliver(MAIL)
    assert Store(tmp_path / "p.db").count_mails() == {"new": 1}


def test_garbage_is_kept_too_and_rejected_when_filed(lmtp, tmp_path):
    deliver = lmtp(tmp_path / "p.db")
    deliver(b"no headers at all\r\n\x00\xff\r\n")
    store = Store(tmp_path / "p.db")
    [outcome] = file_new_mails(store)
    assert outcome.status is Status.REJECTED and outcome.reason


def test_a_store_that_cannot_be_written_answers_451_so_the_mta_keeps_the_mail(lmtp, tmp_path):
    (tmp_path / "not-a-folder").write_text("a file where the database's folder should be")
    deliver = lmtp(tmp_path / "not-a-folder" / "p.db")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        deliver(MAIL)
    assert refused.value.smtp_code == 451


def test_lmtp_on_a_unix_socket(tmp_path):
    socket_path = tmp_path / "lmtp.sock"
    controller = LmtpSocketController(LmtpDelivery(tmp_path / "p.db"), unix_socket=str(socket_path))
    controller.start()
    try:
        with smtplib.LMTP(str(socket_path)) as client:
            client.sendmail("list-bounces@lists.archlinux.org", ["patchbot@example.org"], MAIL)
    finally:
        controller.stop()
    assert Store(tmp_path / "p.db").has_mail("<lmtp.1@example.org>")


def test_a_mail_with_lines_longer_than_rfc_5321_allows_is_stored_intact(lmtp, tmp_path):
    """A patch may carry minified code: a 500 for its long line would bounce it at the MTA."""
    deliver = lmtp(tmp_path / "p.db")
    long_mail = MAIL.replace(b"<lmtp.1@", b"<lmtp.long@").replace(b"+b\r\n", b"+" + b"x" * 20000 + b"\r\n")
    deliver(long_mail)
    store = Store(tmp_path / "p.db")
    assert store.raw_mail(store.mail("<lmtp.long@example.org>").id) == long_mail


def test_a_full_disk_answers_451_and_the_mta_retry_is_stored_once_there_is_room(lmtp, tmp_path):
    """Never 250 without the commit: on a full disk the MTA keeps the mail, and its retry lands."""
    from store.small_disk import small_disk

    with small_disk(tmp_path / "disk") as disk:
        db = disk.path / "p.db"
        Store(db).close()
        deliver = lmtp(db)
        disk.fill()
        with pytest.raises(smtplib.SMTPDataError) as refused:
            deliver(MAIL)
        assert refused.value.smtp_code == 451
        disk.free()
        deliver(MAIL)  # the MTA's retry
        assert Store(db).mail("<lmtp.1@example.org>").status == "new"


def test_a_database_read_only_at_the_first_delivery_is_written_once_it_may_be(lmtp, tmp_path):
    """The server opens its connection at the first delivery; SQLite opens a file it may not
    write read-only and kept that connection so: 451 for ever after the file was fixed."""
    from store.small_disk import small_disk

    with small_disk(tmp_path / "disk") as disk:
        db = disk.path / "p.db"
        Store(db).close()
        disk.chattr("+i", db)  # the operator restored it with the wrong flags (root ignores chmod)
        deliver = lmtp(db)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            deliver(MAIL)
        assert refused.value.smtp_code == 451
        disk.chattr("-i", db)
        deliver(MAIL)
        assert Store(db).mail("<lmtp.1@example.org>").status == "new"
