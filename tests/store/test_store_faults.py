"""The machine's faults against the mail's: a full disk or a read-only database is retried and
reopened, never marks a mail failed; a mail whose handling raised is set aside until requeued."""

from __future__ import annotations

import errno
import sqlite3

import pytest
from store.small_disk import small_disk

from patchbot.series.intake import Status, file_new_mails, keep, set_aside, take_in
from patchbot.sources import RawMail
from patchbot.store.connection import StoreError, is_machine_fault
from patchbot.store.database import Store

PATCH = (b"From: Jane Doe <jane@example.org>\nSubject: [PATCH] rpc: fix\nMessage-Id: <fault.1@example.org>\n"
         b"Date: Mon, 30 Nov 2026 10:00:00 +0000\n\n---\n"
         b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
REPLY = (b"From: Lukas <lukas@example.org>\nSubject: Re: [PATCH] rpc: fix\nMessage-Id: <fault.2@example.org>\n"
         b"In-Reply-To: <fault.1@example.org>\nReferences: <fault.1@example.org>\n"
         b"Date: Mon, 30 Nov 2026 11:00:00 +0000\n\npatchbot: retest\n")


def test_a_mail_kept_before_the_disk_filled_stays_new_and_is_filed_once_there_is_room(tmp_path):
    """Disk full once marked mails 'failed' for good (only 'new' ones are ever filed)."""
    with small_disk(tmp_path / "disk") as disk:
        store = Store(disk.path / "p.db")
        with store.transaction():
            keep(store, RawMail(PATCH, "test"))
        disk.empty_the_wal(store.path)
        disk.fill()
        with pytest.raises(sqlite3.OperationalError) as full:
            file_new_mails(store)
        assert "full" in str(full.value) and is_machine_fault(full.value)
        assert store.mail("<fault.1@example.org>").status == "new"
        assert store.failed_mails() == []
        disk.free()
        [outcome] = file_new_mails(store)  # the same Store: its next transaction reopened it
        assert outcome.status is Status.FILED
        assert store.mail("<fault.1@example.org>").facts.kind == "patch"
        store.close()


def test_a_store_opened_while_its_file_was_read_only_writes_once_the_file_may_be_written(tmp_path):
    """SQLite opens a file it may not write read-only, and the connection stayed so after the
    permissions were fixed: LMTP answered 451 for ever. (chattr +i: root ignores chmod.)"""
    with small_disk(tmp_path / "disk") as disk:
        path = disk.path / "p.db"
        service = Store(path)  # the service's own connection, open all along
        disk.chattr("+i", path)
        late = Store(path)  # as the LMTP thread opens its own at the first delivery
        with pytest.raises(sqlite3.OperationalError, match="readonly") as refused:
            with late.transaction():
                keep(late, RawMail(PATCH, "test"))
        assert is_machine_fault(refused.value)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # still so while immutable
            with late.transaction():
                keep(late, RawMail(PATCH, "test"))
        disk.chattr("-i", path)
        with late.transaction():
            keep(late, RawMail(PATCH, "test"))
        assert service.mail("<fault.1@example.org>").status == "new"
        late.close()
        service.close()


def test_machine_faults_are_told_from_the_mails_and_ours():
    no_table = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as missing:
        no_table.execute("SELECT * FROM nowhere")
    assert not is_machine_fault(missing.value)  # our bug, not the disk
    assert is_machine_fault(OSError(errno.ENOSPC, "No space left on device"))
    assert is_machine_fault(OSError(errno.EROFS, "Read-only file system"))
    assert is_machine_fault(OSError(errno.EACCES, "Permission denied"))
    assert not is_machine_fault(OSError(errno.ENOENT, "No such file or directory"))
    assert not is_machine_fault(UnicodeEncodeError("ascii", "jörg", 1, 2, "ordinal not in range(128)"))
    assert not is_machine_fault(AttributeError("'Header' object has no attribute 'replace'"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise StoreError(f"cannot open the database: {error}") from error
    except StoreError as wrapped:
        assert is_machine_fault(wrapped)


def test_a_mail_set_aside_while_being_filed_is_filed_again_when_requeued(store):
    with store.transaction():
        _, mail_id = keep(store, RawMail(PATCH, "test"))
    set_aside(store, mail_id, "<fault.1@example.org>", "file mail", KeyError("a bug of ours, fixed since"))
    [failed] = store.failed_mails()
    assert (failed.id, failed.stage, failed.error, failed.subject) == (mail_id, "file mail", "KeyError: 'a bug of ours, fixed since'", None)
    assert file_new_mails(store) == []  # set aside: not retried at every pass
    assert store.requeue_mails() == [mail_id]
    assert [outcome.status for outcome in file_new_mails(store)] == [Status.FILED]
    assert store.failed_mails() == []


def test_a_requeued_command_mail_never_acts_twice(store):
    """A command mail that raised after it was claimed may have acted: requeued, it counts as
    interrupted (acknowledged as such), never as unread (which would act again)."""
    take_in(store, RawMail(PATCH, "test"))
    reply = take_in(store, RawMail(REPLY, "test"))
    with store.transaction():
        assert store.claim_command_mail(reply.mail_id, reply.series_id, "lukas@example.org", 1, "host:1:1")
    set_aside(store, reply.mail_id, "<fault.2@example.org>", "handle commands", UnicodeEncodeError(
        "ascii", "jörg", 1, 2, "ordinal not in range(128)"))
    assert store.unread_command_mails() == []
    assert store.interrupted_command_mails(lambda claimer: False) == []  # set aside, not interrupted
    [failed] = store.failed_mails()
    assert failed.stage == "handle commands" and failed.error.startswith("UnicodeEncodeError: 'ascii' codec")
    assert failed.subject == "Re: [PATCH] rpc: fix"
    assert store.requeue_mails([reply.mail_id]) == [reply.mail_id]
    assert store.mail_by_id(reply.mail_id).status == "filed"
    assert store.unread_command_mails() == []
    assert [mail.id for mail in store.interrupted_command_mails(lambda claimer: True)] == [reply.mail_id]


def test_a_reply_set_aside_before_it_was_claimed_is_read_again_when_requeued(store):
    take_in(store, RawMail(PATCH, "test"))
    reply = take_in(store, RawMail(REPLY, "test"))
    set_aside(store, reply.mail_id, "<fault.2@example.org>", "handle commands", ValueError("bad header"))
    assert store.unread_command_mails() == []
    assert store.requeue_mails([12345]) == []  # not set aside: left alone
    assert store.requeue_mails([reply.mail_id]) == [reply.mail_id]
    assert [mail.id for mail in store.unread_command_mails()] == [reply.mail_id]


def test_an_error_shown_by_status_is_one_line_without_control_characters(store):
    with store.transaction():
        _, mail_id = keep(store, RawMail(PATCH, "test"))
    set_aside(store, mail_id, "<fault.1@example.org>", "file mail", ValueError("line\nnext\x1b]52;c;AAAA\x07" + "x" * 900))
    [failed] = store.failed_mails()
    assert failed.error.isprintable() and len(failed.error) <= 500
