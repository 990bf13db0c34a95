"""The classification table: one test per rule, and the order in which they win."""

from __future__ import annotations

import pytest

from patchbot.mail.classify import RULES, Kind, classify
from patchbot.mail.subject import parse_subject

PULL_URL = "git://git.kernel.org/pub/scm/linux/kernel/git/x/y.git master"


def kind_of(subject: str, *, has_diff=False, diffstat=False, pull_url=None, in_thread=False) -> tuple[Kind, str]:
    return classify(
        subject=parse_subject(subject), has_diff=has_diff, diffstat=diffstat, pull_url=pull_url, in_thread=in_thread,
    )


# One row per rule: the evidence that makes exactly that rule decide.
CASES = {
    "reply-subject": (dict(subject="Re: [PATCH 1/2] x", has_diff=True, pull_url=PULL_URL), Kind.REPLY),
    "pull-request": (dict(subject="[GIT PULL] x", has_diff=True, pull_url=PULL_URL, in_thread=True), Kind.PULL),
    "numbered-cover": (dict(subject="[PATCH v2 0/3] x", has_diff=True, diffstat=True, in_thread=True), Kind.COVER),
    "has-diff": (dict(subject="[PATCH 2/3] x", has_diff=True, diffstat=True, in_thread=True), Kind.PATCH),
    "diffstat-cover": (dict(subject="[PATCH] x", diffstat=True), Kind.COVER),
    "in-thread": (dict(subject="[PATCH] x", diffstat=True, in_thread=True), Kind.REPLY),
    "no-rule": (dict(subject="[PATCH 1/2] x"), Kind.OTHER),
}


def test_every_rule_has_a_case():
    assert [name for name, _, _ in RULES] == list(CASES)


@pytest.mark.parametrize("rule", list(CASES))
def test_rule(rule):
    evidence, kind = dict(CASES[rule][0]), CASES[rule][1]
    subject = evidence.pop("subject")
    assert kind_of(subject, **evidence) == (kind, rule)


@pytest.mark.parametrize(
    "subject, evidence, expected",
    [
        # A diff without any subject marker is still a patch (Patchwork's corpus mail 0013).
        ("MAINTAINERS: Update entry", dict(has_diff=True), (Kind.PATCH, "has-diff")),
        # A pull request that carries its diff too is a pull request (corpus mail 0003).
        ("[git pull] Please pull", dict(has_diff=True, pull_url=PULL_URL), (Kind.PULL, "pull-request")),
        # A diffstat without a patch marker is prose, not a cover letter.
        ("Weekly stats", dict(diffstat=True), (Kind.OTHER, "no-rule")),
        # A diffstat in a thread is discussion.
        ("[PATCH] x", dict(diffstat=True, in_thread=True), (Kind.REPLY, "in-thread")),
        # A numbered cover letter in a thread is still a cover letter.
        ("[PATCH 0/2] x", dict(in_thread=True), (Kind.COVER, "numbered-cover")),
        # "mm: fix" is a title, so a diff makes it a patch, not a reply.
        ("mm: fix leak", dict(has_diff=True, in_thread=True), (Kind.PATCH, "has-diff")),
        ("SV: [PATCH] x", dict(has_diff=True), (Kind.REPLY, "reply-subject")),
        ("Plain words", dict(in_thread=True), (Kind.REPLY, "in-thread")),
        ("Plain words", dict(), (Kind.OTHER, "no-rule")),
    ],
)
def test_order_of_the_rules(subject, evidence, expected):
    assert kind_of(subject, **evidence) == expected
