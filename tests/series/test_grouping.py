"""Series assembly from mails made by git format-patch, delivered as a list delivers them."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from gitmail import START, Mail, deliver

from patchbot.series.intake import Status


def only_series(store):
    all_series = store.all_series()
    assert len(all_series) == 1, [(s.id, s.title, s.version, s.received) for s in all_series]
    return all_series[0]


def test_single_patch_is_a_complete_series_of_one(repo, store):
    mails = repo.series(["Fix the RPC info type"], thread=None)
    deliver(store, mails)
    series = only_series(store)
    assert (series.title, series.version, series.total, series.received, series.complete) == (
        "Fix the RPC info type", 1, 1, (1,), True)
    assert series.cover_message_id is None
    assert series.author == "jane@example.org"


@pytest.mark.parametrize("thread", ["shallow", "deep"])
def test_cover_letter_and_patches_form_one_series(repo, store, thread):
    mails = repo.series(["Add a", "Add b", "Add c"], cover="Port the RPC search", thread=thread)
    deliver(store, mails)
    series = only_series(store)
    assert series.title == "Port the RPC search"
    assert series.cover_message_id == mails[0].message_id
    assert series.received == (1, 2, 3)
    assert [slot.message_id for slot in series.patches] == [mail.message_id for mail in mails[1:]]
    assert series.complete


@pytest.mark.parametrize("thread", ["shallow", "deep"])
@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_out_of_order_arrival_gives_the_same_series(repo, store, thread, order):
    mails = repo.series(["Add a", "Add b", "Add c"], cover="Port the RPC search", thread=thread)
    deliver(store, [mails[index] for index in order])
    series = only_series(store)
    assert series.received == (1, 2, 3) and series.complete
    assert series.cover_message_id == mails[0].message_id
    assert series.title == "Port the RPC search"


def test_patches_without_cover_are_named_by_the_first_patch(repo, store):
    mails = repo.series(["First change", "Second change"], thread="shallow")
    deliver(store, [mails[1], mails[0]])
    series = only_series(store)
    assert series.title == "First change" and series.complete and series.cover_message_id is None


def test_unthreaded_patches_from_one_sender_within_20_minutes_group(repo, store):
    mails = repo.series(["Add a", "Add b", "Add c"], thread=None)
    mails[2].set("Date", _date(START + timedelta(minutes=19)))
    deliver(store, mails)
    series = only_series(store)
    assert series.received == (1, 2, 3) and series.complete


def test_unthreaded_patches_far_apart_do_not_group(repo, store):
    mails = repo.series(["Add a", "Add b"], thread=None)
    mails[1].set("Date", _date(START + timedelta(minutes=45)))
    deliver(store, mails)
    assert sorted(s.received for s in store.all_series()) == [(1,), (2,)]


def test_unthreaded_patches_from_different_senders_do_not_group(repo, store):
    mails = repo.series(["Add a", "Add b"], thread=None)
    mails[1].set("From", "John Roe <john@example.org>")
    deliver(store, mails)
    assert len(store.all_series()) == 2


def test_two_unthreaded_series_sent_back_to_back_stay_apart(repo, store):
    first = repo.series(["Add a", "Add b"], thread=None)
    second = repo.series(["Add c", "Add d"], thread=None, sender_date=START + timedelta(minutes=1))
    deliver(store, first + second)
    all_series = store.all_series()
    assert [s.received for s in all_series] == [(1, 2), (1, 2)]
    assert [[slot.message_id for slot in s.patches] for s in all_series] == [
        [m.message_id for m in first], [m.message_id for m in second]]


def test_incomplete_series_says_what_it_has(repo, store):
    mails = repo.series(["Add a", "Add b", "Add c"], cover="Three things")
    deliver(store, [mails[0], mails[1], mails[3]])
    series = only_series(store)
    assert series.received == (1, 3) and series.total == 3 and not series.complete


def test_a_number_already_taken_starts_a_new_series(repo, store):
    mails = repo.series(["Add a", "Add b"], cover="Two things")
    duplicate = Mail(list(mails[2].headers), mails[2].body).set("Message-Id", "<dup.2@example.org>")
    deliver(store, mails + [duplicate])
    all_series = store.all_series()
    assert len(all_series) == 2
    assert all_series[0].received == (1, 2) and all_series[0].complete
    assert all_series[1].received == (2,) and not all_series[1].complete


def test_the_same_mail_twice_changes_nothing(repo, store):
    mails = repo.series(["Add a", "Add b"], cover="Two things")
    deliver(store, mails)
    before = store.all_series()
    outcomes = deliver(store, mails)
    assert {outcome.status for outcome in outcomes} == {Status.KNOWN}
    assert store.all_series() == before


def test_v2_in_reply_to_v1_supersedes_it(repo, store):
    v1 = repo.series(["Add a", "Add b"], cover="Port the RPC search")
    v2 = repo.series(["Add a", "Add b"], cover="Port the RPC search", version=2, in_reply_to=v1[0].message_id,
                     sender_date=START + timedelta(days=3))
    deliver(store, v1 + v2)
    old, new = store.all_series()
    assert (old.version, new.version) == (1, 2)
    assert new.supersedes_id == old.id and old.obsolete and not new.obsolete
    assert new.complete and [s.message_id for s in new.patches] == [m.message_id for m in v2[1:]]
    assert new.cover_message_id == v2[0].message_id


def test_v2_without_cover_in_reply_to_v1_arriving_out_of_order(repo, store):
    v1 = repo.series(["Add a", "Add b", "Add c"], thread="deep")
    v2 = repo.series(["Add a", "Add b", "Add c"], version=2, thread="deep", in_reply_to=v1[0].message_id,
                     sender_date=START + timedelta(days=1))
    deliver(store, v1 + [v2[2], v2[0], v2[1]])
    old, new = store.all_series()
    assert new.version == 2 and new.supersedes_id == old.id and old.obsolete
    assert new.received == (1, 2, 3) and new.complete


def test_v2_sent_as_a_new_thread_is_linked_by_title_and_sender(repo, store):
    v1 = repo.series(["Add a", "Add b"], cover="Port the RPC search")
    v2 = repo.series(["Add a", "Add b"], cover="Port the RPC search", version=2, sender_date=START + timedelta(days=7))
    deliver(store, v1 + v2)
    old, new = store.all_series()
    assert new.supersedes_id == old.id and old.obsolete


def test_v3_supersedes_v2_and_v1_stays_obsolete(repo, store):
    versions = [repo.series(["Add a"], cover="Port", version=n, sender_date=START + timedelta(days=n)) for n in (1, 2, 3)]
    deliver(store, [mail for mails in versions for mail in mails])
    v1, v2, v3 = store.all_series()
    assert (v2.supersedes_id, v3.supersedes_id) == (v1.id, v2.id)
    assert v1.obsolete and v2.obsolete and not v3.obsolete


def test_supersedes_trailer_links_a_renamed_series(repo, store):
    v1 = repo.series(["Add a", "Add b"], cover="Port the RPC search")
    v2 = repo.series(["Add a", "Add b"], cover="Port RPC search and suggest", version=2,
                     sender_date=START + timedelta(days=2), extra_cover_lines=f"Supersedes: {v1[0].message_id}\n")
    deliver(store, v1 + v2)
    old, new = store.all_series()
    assert new.supersedes_id == old.id and old.obsolete


def test_different_title_without_link_is_not_a_new_version(repo, store):
    v1 = repo.series(["Add a"], cover="Port the RPC search")
    other = repo.series(["Add b"], cover="Something else entirely", version=2, sender_date=START + timedelta(days=2))
    deliver(store, v1 + other)
    first, second = store.all_series()
    assert second.supersedes_id is None and not first.obsolete


def test_partial_reroll_replaces_one_patch_and_keeps_the_others(repo, store):
    v1 = repo.series(["Add a", "Add b", "Add c"], cover="Three things")
    fixed = repo.series(["Add b"], version=2, thread=None, sender_date=START + timedelta(days=1))[0]
    fixed.set("Subject", "[PATCH v2 2/3] Add b")
    fixed.set("In-Reply-To", v1[2].message_id)
    fixed.set("References", f"{v1[0].message_id} {v1[2].message_id}")
    deliver(store, v1 + [fixed])
    old, new = store.all_series()
    assert new.version == 2 and new.supersedes_id == old.id and old.obsolete
    assert new.complete and new.received == (1, 2, 3)
    assert [slot.message_id for slot in new.patches] == [v1[1].message_id, fixed.message_id, v1[3].message_id]
    assert [slot.inherited for slot in new.patches] == [True, False, True]
    assert new.title == "Three things"


def test_two_partial_rerolls_of_one_series_share_the_new_version(repo, store):
    v1 = repo.series(["Add a", "Add b", "Add c"], cover="Three things")
    fixes = []
    for number in (2, 3):
        fix = repo.series([f"Fix {number}"], version=2, thread=None, sender_date=START + timedelta(days=1))[0]
        fix.set("Subject", f"[PATCH v2 {number}/3] Fix {number}")
        fix.set("In-Reply-To", v1[number].message_id)
        fixes.append(fix)
    deliver(store, v1 + fixes)
    old, new = store.all_series()
    assert [slot.message_id for slot in new.patches] == [v1[1].message_id, fixes[0].message_id, fixes[1].message_id]
    assert [slot.inherited for slot in new.patches] == [True, False, False]


def test_mercurial_n_of_m_subjects(repo, store):
    mails = repo.series(["Add a", "Add b"], cover="Two things")
    for mail in mails:
        mail.set("Subject", mail.header("Subject").replace("[PATCH 0/2]", "[PATCH 0 of 2]")
                 .replace("[PATCH 1/2]", "[PATCH 1 of 2]").replace("[PATCH 2/2]", "[PATCH 2 of 2]"))
    deliver(store, mails)
    series = only_series(store)
    assert series.received == (1, 2) and series.complete and series.cover_message_id == mails[0].message_id


def test_a_reply_quoting_the_diff_is_a_reply_not_a_series(repo, store):
    mails = repo.series(["Add a"], thread=None)
    quoted = "\n".join("> " + line for line in mails[0].body.split("\n"))
    reply = Mail([
        ("From", "Lukas Reviewer <lukas@example.org>"), ("Subject", "Re: " + mails[0].header("Subject")),
        ("Message-Id", "<review.1@example.org>"), ("In-Reply-To", mails[0].message_id),
        ("References", mails[0].message_id), ("Date", _date(START + timedelta(hours=1))),
    ], f"On Monday Jane wrote:\n{quoted}\n\nLooks good.\n\nReviewed-by: Lukas Reviewer <lukas@example.org>\n")
    outcomes = deliver(store, mails + [reply])
    series = only_series(store)
    assert outcomes[1].kind == "reply" and outcomes[1].series_id == series.id
    assert series.received == (1,)


def test_an_unnumbered_patch_posted_into_a_thread_is_discussion(repo, store):
    mails = repo.series(["Add a", "Add b"], cover="Two things")
    fixup = repo.series(["Fixup for b"], thread=None, sender_date=START + timedelta(hours=2))[0]
    fixup.set("In-Reply-To", mails[2].message_id)
    outcomes = deliver(store, mails + [fixup])
    assert outcomes[-1].kind == "reply"
    assert only_series(store).received == (1, 2)


def test_a_reply_arriving_before_its_patch_still_finds_nothing_to_break(repo, store):
    mails = repo.series(["Add a"], thread=None)
    reply = Mail([
        ("From", "Lukas <lukas@example.org>"), ("Subject", "Re: " + mails[0].header("Subject")),
        ("Message-Id", "<early.1@example.org>"), ("In-Reply-To", mails[0].message_id),
        ("Date", _date(START)),
    ], "Early bird.\n")
    deliver(store, [reply] + mails)
    assert only_series(store).complete


def _date(moment):
    import email.utils

    return email.utils.format_datetime(moment)
