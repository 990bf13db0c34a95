"""patchbot.commands.identity: whom a reply is believed to come from, on a real store, with mails
signed by dkimpy (keys made here, served in place of DNS)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from commands_support import SIGNED_HEADERS, DkimKeys
from patchbot.commands.identity import freshness_refusal, identify
from patchbot.config.load import load_config
from patchbot.config.records import CommandsConfig, Config, MailConfig
from patchbot.series.intake import take_in
from patchbot.mail import parse_mail
from patchbot.sources import RawMail

LIST = "aur-dev@lists.example.org"
CONFIG = Config(mail=MailConfig(list_address=LIST), commands=CommandsConfig(maintainers=("maint@example.org",)))
UNSIGNED = replace(CONFIG, commands=replace(CONFIG.commands, require_dkim=False))

PATCH = """\
From: Kevin <kevin@example.org>
Subject: [PATCH] fix the frobnicator
Date: {date}
Message-ID: <patch@example.org>

Fix it.

Signed-off-by: Kevin <kevin@example.org>
---
diff --git a/x.txt b/x.txt
--- a/x.txt
+++ b/x.txt
@@ -1 +1 @@
-a
+b
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> DkimKeys:
    return DkimKeys(tmp_path_factory.mktemp("keys"), ("example.org", "lists.example.org", "evil.example"))


@pytest.fixture
def thread(store):
    """A store holding one patch: replies to <patch@example.org> are filed in its series."""
    take_in(store, RawMail(PATCH.format(date=format_datetime(datetime.now(timezone.utc))).encode(), "test"))
    return store


def reply(sender: str = "Maint <maint@example.org>", extra: str = "", date: datetime | None = None,
          message_id: str = "<reply@example.org>") -> RawMail:
    head = (f"From: {sender}\nTo: {LIST}\nSubject: Re: [PATCH] fix the frobnicator\n"
            f"Date: {format_datetime(date or datetime.now(timezone.utc))}\n"
            + (f"Message-ID: {message_id}\n" if message_id else "")
            + f"In-Reply-To: <patch@example.org>\nReferences: <patch@example.org>\n{extra}")
    return RawMail((head + "\npatchbot: retest\n").encode(), "test")


def filed(store, mail: RawMail):
    outcome = take_in(store, mail)
    return store.mail(outcome.message_id)


def test_a_signed_reply_is_its_senders(thread, keys):
    mail = keys.sign(reply(), "example.org")
    identity = identify(mail.data, filed(thread, mail), CONFIG, thread, dnsfunc=keys.records.get)
    assert (identity.address, identity.refusal) == ("maint@example.org", None)
    assert identity.signature and identity.date is not None


def test_a_signed_reply_without_a_message_id_is_refused(thread, keys):
    """Stored under a made-up id (the hash of its bytes), which a copy with one more header changes."""
    mail = keys.sign(reply(message_id=""), "example.org")
    identity = identify(mail.data, filed(thread, mail), CONFIG, thread, dnsfunc=keys.records.get)
    assert identity.refusal == "its signed Message-ID is not the one it was stored under"


def test_a_signature_acts_once_whatever_record_carries_it(thread, keys):
    mail = keys.sign(reply(), "example.org")
    record = filed(thread, mail)
    identity = identify(mail.data, record, CONFIG, thread, dnsfunc=keys.records.get)
    assert freshness_refusal(identity, record, CONFIG, thread) is None
    assert freshness_refusal(identity, record, CONFIG, thread) is None  # the same mail, handled again
    other = filed(thread, reply(message_id="<another@example.org>"))
    assert freshness_refusal(identity, other, CONFIG, thread) == \
        "the same signed mail acted already (a copy of it was sent again)"


@pytest.mark.parametrize("age, refused", [(timedelta(days=6), None), (timedelta(days=8), "more than 7 days"),
                                          (timedelta(days=-2), "later than when patchbot received it")])
def test_a_signed_command_counts_within_max_age_days_of_its_date(thread, keys, age, refused):
    mail = keys.sign(reply(date=datetime.now(timezone.utc) - age), "example.org")
    record = filed(thread, mail)
    identity = identify(mail.data, record, CONFIG, thread, dnsfunc=keys.records.get)
    reason = freshness_refusal(identity, record, CONFIG, thread)
    assert (reason is None) if refused is None else (refused in reason), reason


def test_the_list_signature_over_x_original_from_vouches_for_its_address(thread, keys):
    mail = keys.sign(reply(sender=f'"Maint via aur-dev" <{LIST}>', extra="X-Original-From: Maint <maint@example.org>\n"),
                     "lists.example.org", headers=(*SIGNED_HEADERS, b"x-original-from"))
    identity = identify(mail.data, filed(thread, mail), CONFIG, thread, dnsfunc=keys.records.get)
    assert (identity.address, identity.refusal, identity.via_list) == ("maint@example.org", None, True)


def test_reply_to_stands_in_when_the_list_sets_no_x_original_from(thread, keys):
    mail = keys.sign(reply(sender=f'"Maint via aur-dev" <{LIST}>', extra="Reply-To: Maint <maint@example.org>\n"),
                     "lists.example.org", headers=(*SIGNED_HEADERS, b"reply-to"))
    identity = identify(mail.data, filed(thread, mail), CONFIG, thread, dnsfunc=keys.records.get)
    assert identity.address == "maint@example.org" and identity.refusal is None


@pytest.mark.parametrize("config", [CONFIG, UNSIGNED], ids=["require_dkim", "no dkim"])
def test_via_in_a_display_name_is_no_rewrite(thread, keys, config):
    mail = keys.sign(reply(sender='"Maint via aur-dev" <mallory@evil.example>',
                           extra="X-Original-From: Maint <maint@example.org>\nList-Post: <mailto:mallory@evil.example>\n"),
                     "evil.example", headers=(*SIGNED_HEADERS, b"x-original-from"))
    identity = identify(mail.data, filed(thread, mail), config, thread, dnsfunc=keys.records.get)
    assert (identity.address, identity.refusal) == ("mallory@evil.example", None)


def test_the_list_address_without_a_configured_list_is_just_an_address(thread):
    mail = reply(sender=f'"Maint via aur-dev" <{LIST}>', extra="X-Original-From: Maint <maint@example.org>\n")
    config = replace(UNSIGNED, mail=MailConfig())
    assert identify(mail.data, filed(thread, mail), config, thread).address == LIST


def test_two_original_senders_are_refused(thread):
    mail = reply(sender=f'"Maint via aur-dev" <{LIST}>',
                 extra="X-Original-From: Mallory <mallory@evil.example>\nX-Original-From: Maint <maint@example.org>\n")
    identity = identify(mail.data, filed(thread, mail), UNSIGNED, thread)
    assert identity.refusal is not None and "does not name one original sender" in identity.refusal


@pytest.mark.parametrize("extra", ["Message-ID: <replay@evil.example>\n", "In-Reply-To: <other@evil.example>\n"])
def test_a_read_header_twice_is_refused_even_unsigned(thread, extra):
    mail = RawMail(extra.encode() + reply().data, "test")
    identity = identify(mail.data, filed(thread, mail), UNSIGNED, thread)
    assert identity.refusal is not None and identity.refusal.startswith("it has 2 ")


def test_the_parsed_author_label_needs_from_to_be_the_list():
    """parse_mail's sender (a label for display and threading) is rewritten only when From is the
    address List-Post names; a display name with "via" alone does nothing."""
    forged = reply(sender='"Maint via aur-dev" <mallory@evil.example>', extra="X-Original-From: maint@example.org\n")
    assert parse_mail(forged.data).sender.addr == "mallory@evil.example"
    listed = reply(sender=f'"Maint via aur-dev" <{LIST}>',
                   extra=f"X-Original-From: maint@example.org\nList-Post: <mailto:{LIST}>\n")
    assert parse_mail(listed.data).sender.addr == "maint@example.org" and parse_mail(listed.data).via_list


def test_max_age_days_is_read_from_the_config(tmp_path, thread, keys):
    path = tmp_path / "patchbot.toml"
    path.write_text(f'[mail]\nlist = "{LIST}"\n\n[commands]\nmaintainers = ["maint@example.org"]\nmax_age_days = 2\n')
    config = load_config(path)
    assert config.commands.require_dkim and config.commands.max_age_days == 2
    mail = keys.sign(reply(date=datetime.now(timezone.utc) - timedelta(days=3)), "example.org")
    record = filed(thread, mail)
    identity = identify(mail.data, record, config, thread, dnsfunc=keys.records.get)
    assert "more than 2 days" in freshness_refusal(identity, record, config, thread)


@pytest.mark.parametrize("to, cc, headers, refused", [
    ("Kevin <kevin@example.org>", None, SIGNED_HEADERS, True),
    ("Kevin <kevin@example.org>", f"aur-dev <{LIST}>", (*SIGNED_HEADERS, b"cc"), False),
    ("Kevin <kevin@example.org>", f"aur-dev <{LIST}>", SIGNED_HEADERS, True),  # Cc added, unsigned
    (LIST, None, tuple(h for h in SIGNED_HEADERS if h != b"to"), True),  # To not signed
], ids=["private", "list in signed Cc", "list in unsigned Cc", "To unsigned"])
def test_a_signed_command_counts_only_when_sent_to_the_list(thread, keys, to, cc, headers, refused):
    raw = reply().data.replace(f"To: {LIST}\n".encode(), f"To: {to}\n".encode() + (f"Cc: {cc}\n".encode() if cc else b""))
    signed = keys.sign(RawMail(raw, "test"), "example.org", headers=headers)
    if cc and b"cc" not in headers:
        signed = RawMail(signed.data.replace(f"Cc: {cc}\n".encode(), b"") .replace(b"\n\n", f"\nCc: {cc}\n\n".encode(), 1), "test")
    identity = identify(signed.data, filed(thread, signed), CONFIG, thread, dnsfunc=keys.records.get)
    assert (identity.refusal is not None) == refused, identity.refusal
    if refused:
        assert "it was not sent to aur-dev@lists.example.org" in identity.refusal
