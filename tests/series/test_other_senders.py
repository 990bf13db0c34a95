"""Only a series' own sender (or a maintainer) adds to it, re-rolls it or supersedes it.

Anyone on the list can post into a thread. Every case here is a mail made by git format-patch,
sent by Mallory into Vera's thread (or naming Vera's series), filed into a real store: Vera's
series must stay as it was and current, and Mallory's mail must become a series of her own.
"""

from __future__ import annotations

from datetime import timedelta

from gitmail import START, Mail, deliver

from patchbot.config.records import CommandsConfig, Config
from patchbot.series.intake import take_in
from patchbot.sources import RawMail

VERA = "Vera Example <vera@example.org>"
MALLORY = "Mallory <mallory@evil.example>"
LUKAS = "Lukas Fleischer <lukas@example.org>"


def sent_by(sender: str, mails: list[Mail]) -> list[Mail]:
    for mail in mails:
        mail.set("From", sender)
    return mails


def veras_series(repo, titles=("Add a", "Add b"), cover: str | None = "Two things") -> list[Mail]:
    return sent_by(VERA, repo.series(list(titles), cover=cover))


def one_patch(repo, subject: str, sender: str, parent: Mail, *ancestors: Mail, days: int = 1) -> Mail:
    """A patch of `sender` with the given subject, sent in reply to `parent`."""
    mail = sent_by(sender, repo.series(["Add b"], thread=None, sender_date=START + timedelta(days=days)))[0]
    mail.set("Subject", subject)
    mail.set("In-Reply-To", parent.message_id)
    mail.set("References", " ".join(m.message_id for m in (*ancestors, parent)))
    return mail


def series_of(store, mail: Mail):
    return store.series(store.mail(mail.message_id).series_id)


def assert_untouched(store, vera: list[Mail], before) -> None:
    """Vera's series is exactly as it was, current, and nothing re-rolls it."""
    after = store.series(before.id)
    assert after == before
    assert not after.obsolete and store.newer_version(after.id) is None


def test_another_senders_v2_in_reply_to_a_patch_does_not_take_over_the_series(repo, store):
    vera = veras_series(repo)
    deliver(store, vera)
    before = series_of(store, vera[0])
    attack = one_patch(repo, "[PATCH v2 2/2] Add b", MALLORY, vera[2], vera[0])
    deliver(store, [attack])
    assert_untouched(store, vera, before)
    mallorys = series_of(store, attack)
    assert mallorys.id != before.id
    assert (mallorys.author, mallorys.version, mallorys.received, mallorys.title) == (
        "mallory@evil.example", 2, (2,), "Add b")
    assert mallorys.supersedes_id is None and mallorys.cover_message_id is None
    assert [slot.inherited for slot in mallorys.patches] == [False]
    assert store.mail(attack.message_id).facts.kind_rule != "reroll-partial"


def test_another_senders_v2_of_a_single_patch_does_not_supersede_it(repo, store):
    vera = sent_by(VERA, repo.series(["Fix the RPC info type"], thread=None))
    deliver(store, vera)
    before = series_of(store, vera[0])
    attack = one_patch(repo, "[PATCH v2] Fix the RPC info type", MALLORY, vera[0])
    deliver(store, [attack])
    assert_untouched(store, vera, before)
    assert series_of(store, attack).author == "mallory@evil.example"
    own = one_patch(repo, "[PATCH v2] Fix the RPC info type", VERA, vera[0], days=2)
    deliver(store, [own])
    assert series_of(store, own).supersedes_id == before.id and series_of(store, vera[0]).obsolete


def test_the_authors_own_partial_reroll_still_replaces_one_patch(repo, store):
    vera = veras_series(repo)
    fixed = one_patch(repo, "[PATCH v2 2/2] Add b", VERA, vera[2], vera[0])
    deliver(store, vera + [fixed])
    old, new = store.all_series()
    assert new.supersedes_id == old.id and old.obsolete and new.complete
    assert [slot.inherited for slot in new.patches] == [True, False]


def test_another_senders_whole_v2_in_reply_to_the_cover_is_a_series_of_its_own(repo, store):
    vera = veras_series(repo)
    deliver(store, vera)
    before = series_of(store, vera[0])
    mallory = sent_by(MALLORY, repo.series(["Add a", "Add b"], cover="Two things", version=2,
                                           in_reply_to=vera[0].message_id, sender_date=START + timedelta(days=1)))
    deliver(store, mallory)
    assert_untouched(store, vera, before)
    theirs = series_of(store, mallory[0])
    assert theirs.author == "mallory@evil.example" and theirs.complete and theirs.supersedes_id is None
    assert [slot.message_id for slot in theirs.patches] == [mail.message_id for mail in mallory[1:]]


def test_another_senders_patches_in_the_thread_group_with_each_other(repo, store):
    vera = veras_series(repo)
    deliver(store, vera)
    first = one_patch(repo, "[PATCH v2 1/2] Add a", MALLORY, vera[0])
    second = one_patch(repo, "[PATCH v2 2/2] Add b", MALLORY, vera[0])
    deliver(store, [first, second])
    assert series_of(store, first).id == series_of(store, second).id
    assert series_of(store, first).received == (1, 2)


def test_another_senders_patch_3_of_2_does_not_join_the_series(repo, store):
    """3/2 is a counter beyond the total: Vera's own 3/2 would join her series
    (test_extra_patches.py); Mallory's starts a series of her own."""
    vera = veras_series(repo)
    deliver(store, vera)
    before = series_of(store, vera[0])
    extra = one_patch(repo, "[PATCH 3/2] Add c", MALLORY, vera[0])
    deliver(store, [extra])
    assert_untouched(store, vera, before)
    assert before.complete and not before.extra_patches
    assert series_of(store, extra).id != before.id and series_of(store, extra).author == "mallory@evil.example"


def test_another_senders_patch_3_of_3_in_the_thread_does_not_join_the_series(repo, store):
    vera = veras_series(repo, titles=("Add a", "Add b", "Add c"), cover="Three things")
    deliver(store, vera[:3])
    before = series_of(store, vera[0])
    extra = one_patch(repo, "[PATCH 3/3] Add c", MALLORY, vera[0])
    deliver(store, [extra])
    assert_untouched(store, vera, before)
    assert series_of(store, extra).id != before.id
    deliver(store, [vera[3]])
    assert series_of(store, vera[0]).complete and series_of(store, vera[3]).id == before.id


def test_another_senders_patch_taking_a_number_first_does_not_take_its_place(repo, store):
    """Mallory's 2/2 arrives before Vera's: it used to fill the slot, so that Vera's complete
    series, tested and applied, carried Mallory's patch."""
    vera = veras_series(repo)
    early = one_patch(repo, "[PATCH 2/2] Add b", MALLORY, vera[0], days=0)
    deliver(store, [vera[0], vera[1], early, vera[2]])
    veras = series_of(store, vera[0])
    assert [slot.message_id for slot in veras.patches] == [vera[1].message_id, vera[2].message_id]
    assert veras.complete and series_of(store, early).id != veras.id


def test_another_senders_cover_letter_in_the_thread_does_not_become_the_cover(repo, store):
    vera = sent_by(VERA, repo.series(["First change", "Second change"], thread="shallow"))
    deliver(store, vera)
    before = series_of(store, vera[0])
    cover = one_patch(repo, "[PATCH 0/2] Better things", MALLORY, vera[0])
    cover.body = "base-commit: 0123456789abcdef0123456789abcdef01234567\n\n" + cover.body.split("---", 1)[0]
    deliver(store, [cover])
    assert_untouched(store, vera, before)
    assert before.cover_message_id is None and before.title == "First change"
    assert series_of(store, cover).cover_message_id == cover.message_id


def test_supersedes_naming_another_senders_series_is_not_obeyed(repo, store):
    vera = veras_series(repo)
    deliver(store, vera)
    before = series_of(store, vera[0])
    mallory = sent_by(MALLORY, repo.series(["Add a", "Add b"], cover="Two better things", version=2,
                                           sender_date=START + timedelta(days=2),
                                           extra_cover_lines=f"Supersedes: {vera[0].message_id}\n"))
    deliver(store, mallory)
    assert_untouched(store, vera, before)
    assert series_of(store, mallory[0]).supersedes_id is None


def test_the_same_title_from_another_sender_is_not_a_new_version(repo, store):
    vera = veras_series(repo)
    deliver(store, vera)
    before = series_of(store, vera[0])
    mallory = sent_by(MALLORY, repo.series(["Add a", "Add b"], cover="Two things", version=2,
                                           sender_date=START + timedelta(days=2)))
    deliver(store, mallory)
    assert_untouched(store, vera, before)


def test_the_authors_reroll_in_reply_to_a_strangers_patch_still_supersedes_her_own(repo, store):
    vera = veras_series(repo)
    stranger = one_patch(repo, "[PATCH v2 2/2] Add b", MALLORY, vera[2], vera[0])
    v2 = sent_by(VERA, repo.series(["Add a", "Add b"], cover="Two things", version=2,
                                   in_reply_to=stranger.message_id, sender_date=START + timedelta(days=2)))
    v2[0].set("References", f"{vera[0].message_id} {vera[2].message_id} {stranger.message_id}")
    deliver(store, vera + [stranger] + v2)
    v1, v2_series = series_of(store, vera[0]), series_of(store, v2[0])
    assert v2_series.supersedes_id == v1.id and v1.obsolete and v2_series.complete
    assert series_of(store, stranger).supersedes_id is None and not series_of(store, stranger).obsolete


def _maintained(**commands) -> Config:
    return Config(commands=CommandsConfig(maintainers=("lukas@example.org",), **commands))


def test_a_maintainers_reroll_supersedes_the_authors_series(repo, store):
    vera = veras_series(repo)
    deliver(store, vera)
    reroll = one_patch(repo, "[PATCH v2 2/2] Add b", LUKAS, vera[2], vera[0])
    take_in(store, RawMail(reroll.as_bytes(), "test"), _maintained(require_dkim=False))
    old, new = series_of(store, vera[0]), series_of(store, reroll)
    assert new.supersedes_id == old.id and old.obsolete and new.complete
    assert new.title == "Two things" and [slot.inherited for slot in new.patches] == [True, False]


def test_a_maintainers_address_without_the_dkim_the_config_requires_is_anyone(repo, store):
    """With require_dkim, a From naming a maintainer is not enough: the same check as a command."""
    vera = veras_series(repo)
    deliver(store, vera)
    before = series_of(store, vera[0])
    forged = one_patch(repo, "[PATCH v2 2/2] Add b", LUKAS, vera[2], vera[0])
    take_in(store, RawMail(forged.as_bytes(), "test"), _maintained(require_dkim=True))
    assert_untouched(store, vera, before)
    assert series_of(store, forged).supersedes_id is None


def test_a_maintainers_dkim_signed_reroll_supersedes_the_authors_series(repo, store, tmp_path, monkeypatch):
    from commands.commands_support import DkimKeys  # real keys made with openssl, served as DNS would

    keys = DkimKeys(tmp_path, ("example.org",))
    keys.serve(monkeypatch)
    vera = veras_series(repo)
    deliver(store, vera)
    reroll = one_patch(repo, "[PATCH v2 2/2] Add b", LUKAS, vera[2], vera[0])
    take_in(store, keys.sign(RawMail(reroll.as_bytes(), "test"), "example.org"), _maintained(require_dkim=True))
    old, new = series_of(store, vera[0]), series_of(store, reroll)
    assert new.supersedes_id == old.id and old.obsolete


def test_a_message_id_named_by_a_stranger_before_it_arrives_stays_with_its_own_series(repo, store):
    """Mallory's patch names Vera's cover letter (a guessed git send-email id) before it arrives:
    the cover's id once led to Mallory's series, and with it every reply to Vera's cover letter,
    maintainers' commands included."""
    vera = veras_series(repo)
    planted = sent_by(MALLORY, repo.series(["Something"], thread=None))[0]
    planted.set("References", vera[0].message_id)
    deliver(store, [planted, *vera])
    veras, mallorys = series_of(store, vera[0]), series_of(store, planted)
    assert veras.id != mallorys.id and veras.complete and veras.cover_message_id == vera[0].message_id
    review = Mail([("From", LUKAS), ("Subject", "Re: [PATCH 0/2] Two things"), ("Message-Id", "<review@example.org>"),
                   ("In-Reply-To", vera[0].message_id), ("References", vera[0].message_id),
                   ("Date", "Mon, 01 Mar 2021 18:00:00 +0000")], "patchbot: status\n")
    deliver(store, [review])
    assert store.mail(review.message_id).series_id == veras.id
    assert store.series_by_thread((vera[0].message_id,)).id == veras.id


def test_replies_in_the_thread_do_not_put_off_testing_an_incomplete_series(repo, store):
    """The grace period of an incomplete series counts from its own newest mail: a stranger
    replying every few hours must not keep it from ever being tested."""
    vera = veras_series(repo, titles=("Add a", "Add b", "Add c"), cover="Three things")
    deliver(store, vera[:2])
    veras = series_of(store, vera[0])
    last = store.last_received(veras.id)
    chatter = Mail([("From", MALLORY), ("Subject", "Re: [PATCH 1/3] Add a"), ("Message-Id", "<chatter@evil.example>"),
                    ("In-Reply-To", vera[1].message_id), ("References", f"{vera[0].message_id} {vera[1].message_id}"),
                    ("Date", "Mon, 01 Mar 2021 18:00:00 +0000")], "Any news?\n")
    deliver(store, [chatter])
    assert store.mail(chatter.message_id).series_id == veras.id
    assert store.last_received(veras.id) == last
    deliver(store, [vera[2]])
    assert store.last_received(veras.id) > last
