"""Issue 14's series rules, with mails made by git format-patch --thread and send-email's headers:
a cover letter's version wins over its patches', a number beyond the total joins its series,
Based-on:/Depends-on:/Supersedes: in replies count from the author or a maintainer only, and an
earlier version filed late never becomes current."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from gitmail import START, Mail, deliver

from patchbot.config.records import CommandsConfig, Config
from patchbot.series.intake import take_in
from patchbot.sources import RawMail

VERA = "Vera Example <vera@example.org>"
MALLORY = "Mallory <mallory@evil.example>"


def series_of(store, mail: Mail):
    return store.series(store.mail(mail.message_id).series_id)


def reply(sender: str, parent: Mail, body: str, number: int = 0) -> Mail:
    """A reply in the thread, as a mail client writes it."""
    return Mail([("From", sender), ("Subject", f"Re: {parent.header('Subject')}"),
                 ("Message-Id", f"<reply{number}.{parent.message_id.strip('<>')}>"),
                 ("In-Reply-To", parent.message_id), ("References", parent.message_id),
                 ("Date", "Tue, 02 Mar 2021 12:00:00 +0000")], body)


def retitled(mails: list[Mail], pattern: str, replacement: str) -> list[Mail]:
    for mail in mails:
        mail.set("Subject", re.sub(pattern, replacement, mail.header("Subject")))
    return mails


def net_next_v3(repo) -> list[Mail]:
    """The cover letter says `[PATCH net-next v3 0/4]` (edited by hand), the patches `[PATCH n/4]`."""
    mails = repo.series(["Add a", "Add b", "Add c", "Add d"], cover="Four things")
    mails[0].set("Subject", mails[0].header("Subject").replace("[PATCH 0/4]", "[PATCH net-next v3 0/4]"))
    return mails


def test_patches_under_a_cover_letter_take_its_version(repo, store):
    mails = net_next_v3(repo)
    deliver(store, mails)
    series = series_of(store, mails[0])
    assert {series_of(store, mail).id for mail in mails} == {series.id}
    assert series.version == 3 and series.complete
    assert [(slot.number, slot.version) for slot in series.version_mismatches] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert len(store.all_series()) == 1


def test_a_cover_letter_arriving_after_its_patches_gives_them_its_version(repo, store):
    mails = net_next_v3(repo)
    deliver(store, mails[1:] + mails[:1])
    series = series_of(store, mails[0])
    assert {series_of(store, mail).id for mail in mails} == {series.id}
    assert series.version == 3 and series.complete and series.cover_message_id == mails[0].message_id


def test_patch_3_of_2_from_the_author_joins_the_series_as_an_extra(repo, store):
    mails = retitled(repo.series(["Add a", "Add b", "Add c"], cover="Two things"), r"/3\]", "/2]")
    assert mails[3].header("Subject").startswith("[PATCH 3/2]")
    deliver(store, mails)
    series = series_of(store, mails[0])
    assert {series_of(store, mail).id for mail in mails} == {series.id}
    assert series.total == 2 and series.received == (1, 2, 3) and series.extra_patches == (3,) and series.complete


def test_based_on_and_depends_on_in_a_reply_by_the_author_or_a_maintainer_count(repo, store, caplog):
    base = repo.series(["Add the base"], thread=None)
    mails = repo.series(["Add a", "Add b"], cover="Two things", sender_date=START + timedelta(hours=1))
    deliver(store, base + mails)
    series = series_of(store, mails[0])
    assert series.based_on == ()
    stranger = reply(MALLORY, mails[0], f"Based-on: <mallory@evil.example>\nSupersedes: {mails[0].message_id}\n", 1)
    caplog.set_level(logging.INFO, logger="patchbot.series.grouping")
    deliver(store, [stranger])
    assert f"{stranger.message_id}: Based-on:/Depends-on:/Supersedes: ignored: mallory@evil.example is neither" in caplog.text
    assert series_of(store, mails[0]).based_on == ()
    own = reply("Jane Doe <jane@example.org>", mails[0], f"Oops, this needs my other patch.\n\nBased-on: {base[0].message_id}\n", 2)
    deliver(store, [own])
    assert series_of(store, mails[0]).based_on == (base[0].message_id,)
    later = reply("Jane Doe <jane@example.org>", mails[0], "Depends-on: <other@example.org>\n", 3)
    deliver(store, [later])
    assert series_of(store, mails[0]).based_on == ("<other@example.org>", base[0].message_id)


def test_supersedes_in_the_authors_reply_makes_the_older_version_obsolete(repo, store):
    v5 = repo.series(["Add a", "Add b"], cover="Old title", version=5)
    v6 = repo.series(["Add a", "Add b"], cover="A new title", version=6, sender_date=START + timedelta(days=1))
    deliver(store, v5 + v6)
    assert not series_of(store, v5[0]).obsolete  # another title: nothing links them yet
    deliver(store, [reply(MALLORY, v6[0], f"Supersedes: {v5[0].message_id}\n", 1)])
    assert not series_of(store, v5[0]).obsolete
    deliver(store, [reply("Jane Doe <jane@example.org>", v6[0], f"Supersedes: {v5[0].message_id}\n", 2)])
    assert series_of(store, v5[0]).obsolete and series_of(store, v6[0]).supersedes_id == series_of(store, v5[0]).id


def test_an_earlier_version_filed_late_and_dated_later_does_not_become_current(repo, store):
    v1 = repo.series(["Add a", "Add b"], cover="Two things", sender_date=START + timedelta(days=3))
    v2 = repo.series(["Add a", "Add b"], cover="Two things", version=2, sender_date=START)
    deliver(store, v2 + v1)
    old, new = series_of(store, v1[0]), series_of(store, v2[0])
    assert old.version == 1 and new.version == 2
    assert old.obsolete and not new.obsolete and new.supersedes_id == old.id
    assert store.newer_version(old.id).id == new.id


def test_filing_twice_keeps_one_hint(repo, store):
    mails = repo.series(["Add a"], thread=None)
    mails[0].body = mails[0].body.replace("Signed-off-by:", "Based-on: <x@example.org>\nSigned-off-by:")
    deliver(store, mails)
    take_in(store, RawMail(mails[0].as_bytes(), "again"))
    assert series_of(store, mails[0]).based_on == ("<x@example.org>",)


def test_a_maintainers_supersedes_in_a_reply_counts_and_an_unproven_one_does_not(repo, store):
    """A reviewer's "Supersedes: <v5 cover>" in v6's thread: honoured from a maintainer whose mail
    passes the command check, ignored when the config requires DKIM and the mail has none."""
    v5 = repo.series(["Add a", "Add b"], cover="Old title", version=5)
    v6 = repo.series(["Add a", "Add b"], cover="A new title", version=6, sender_date=START + timedelta(days=1))
    deliver(store, v5 + v6)
    review = reply("Lukas Fleischer <lukas@example.org>", v6[0], f"Supersedes: {v5[0].message_id}\n", 1)
    take_in(store, RawMail(review.as_bytes(), "test"), _maintained(require_dkim=True))
    assert not series_of(store, v5[0]).obsolete
    review = reply("Lukas Fleischer <lukas@example.org>", v6[0], f"Supersedes: {v5[0].message_id}\n", 2)
    take_in(store, RawMail(review.as_bytes(), "test"), _maintained(require_dkim=False))
    assert series_of(store, v5[0]).obsolete and series_of(store, v6[0]).supersedes_id == series_of(store, v5[0]).id


def _maintained(**commands) -> Config:
    return Config(commands=CommandsConfig(maintainers=("lukas@example.org",), **commands))
