"""Decide what a mail is, by an ordered table of named rules: the first that holds wins."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from patchbot.mail.subject import Subject


class Kind(Enum):
    PATCH = "patch"
    COVER = "cover"
    PULL = "pull"
    REPLY = "reply"
    OTHER = "other"


@dataclass(frozen=True)
class Evidence:
    """What the rules look at, read once from the mail."""

    subject: Subject
    has_diff: bool
    diffstat: bool
    pull_url: str | None
    in_thread: bool


Rule = Callable[[Evidence], bool]

# Order matters: a reply that quotes a pull request is a reply; a reply never starts a
# series (series.py may still file an unnumbered patch sent into a known thread as a reply).
RULES: tuple[tuple[str, Rule, Kind], ...] = (
    ("reply-subject", lambda e: e.subject.reply_marker, Kind.REPLY),
    ("pull-request", lambda e: e.pull_url is not None, Kind.PULL),
    ("numbered-cover", lambda e: e.subject.counter == 0, Kind.COVER),
    ("has-diff", lambda e: e.has_diff, Kind.PATCH),
    # An unnumbered thread root with a diffstat and no diff: a cover letter.
    ("diffstat-cover", lambda e: e.diffstat and e.subject.has_patch_marker and not e.in_thread, Kind.COVER),
    ("in-thread", lambda e: e.in_thread, Kind.REPLY),
    ("no-rule", lambda e: True, Kind.OTHER),
)


def classify(**evidence) -> tuple[Kind, str]:
    """The kind of a mail and the name of the rule that decided it."""
    facts = Evidence(**evidence)
    for name, holds, kind in RULES:
        if holds(facts):
            return kind, name
    raise AssertionError("the last rule always holds")
