"""Choose the commit a series is applied to: asked for, Based-on:, base-commit:, a subject tag, the
default branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchbot.testing.apply import BaseChoice, PatchMail, resolve
from patchbot.config.records import RepositoryConfig
from patchbot.mail.subject import parse_subject
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord


@dataclass(frozen=True)
class BaseHints:
    """What a series says about its base."""

    based_on: str | None  # Based-on: <msgid>
    base_commit: str | None  # base-commit: <sha>
    tags: tuple[str, ...]  # subject tags such as [PATCH pu]


def _patch_mails(store: Store, series: SeriesRecord) -> list[PatchMail]:
    total = series.total or len(series.patches)
    return [PatchMail(slot.number, total, slot.subject, store.raw_mail(slot.mail_id)) for slot in series.patches]


def _hints(store: Store, series: SeriesRecord) -> BaseHints:
    mails = [store.mail_by_id(series.cover_mail_id)] if series.cover_mail_id else []
    mails += [store.mail_by_id(slot.mail_id) for slot in series.patches]
    trailers = [trailer for mail in mails if mail.facts for trailer in mail.facts.trailers]
    first = lambda name: next((t.value for t in trailers if t.name == name), None)  # noqa: E731
    tags = tuple(tag for mail in mails if mail.facts for tag in parse_subject(mail.facts.subject).tags)
    # series.based_on: the newest Based-on:/Depends-on: believed, a reply's too (series.py).
    return BaseHints(based_on=next(iter(series.based_on), None) or first("Based-on"), base_commit=first("base-commit"), tags=tags)


def choose_base(store: Store, mirror: Path, repository: RepositoryConfig, hints: BaseHints, requested: str | None) -> BaseChoice:
    """The base, in order: asked for, Based-on:, base-commit:, a subject tag, the default branch."""
    branch = repository.default_branch
    if requested:
        return BaseChoice(requested, f"{requested}, as asked", requested if resolve(mirror, requested) and
                          requested in repository.branches else branch)
    if hints.based_on:
        message_id = hints.based_on if hints.based_on.startswith("<") else f"<{hints.based_on}>"
        other = store.series_of_mail(message_id)
        if other is not None and other.patches:
            return BaseChoice(branch, f"{branch} with series {other.id} ({other.title}) applied first, as Based-on: says",
                              branch, prerequisites=tuple(_patch_mails(store, other)))
    if hints.base_commit and resolve(mirror, hints.base_commit):
        return BaseChoice(hints.base_commit, f"base-commit: {hints.base_commit[:12]} from the series", branch)
    for tag in hints.tags:
        if tag in repository.tag_branches:
            target = repository.tag_branches[tag]
            return BaseChoice(target, f"{target}, for the [{tag}] subject tag", target)
    return BaseChoice(branch, f"the default branch {branch}", branch)
