"""Choose the suites a series needs: paths it touches -> stacks -> suites that apply to the base."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

from patchbot.config.records import Config, SuiteConfig

ANY_STACK = "*"


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob where `*` stays within a folder and `**` crosses folders."""
    out, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(_glob_regex(pattern).match(path) for pattern in patterns)


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def literal_folder(pattern: str) -> str:
    """The folder a glob's matches all lie in ("test" for `test/test_*.py`; "" for `**/*.php`):
    only that part of a tree needs listing to find them."""
    head = pattern[:min((pattern.find(c) for c in "*?" if c in pattern), default=len(pattern))]
    return head.rpartition("/")[0]


def stacks_of_path(path: str, config: Config) -> frozenset[str]:
    """The stacks one path belongs to: ignored paths none, shared paths every stack."""
    if matches(path, config.ignored_paths):
        return frozenset()
    if matches(path, config.shared_paths):
        return frozenset(config.stacks)
    return frozenset(name for name, patterns in config.stacks.items() if matches(path, patterns))


def stacks_touched(paths: Iterable[str], config: Config) -> frozenset[str]:
    touched: set[str] = set()
    for path in paths:
        touched |= stacks_of_path(path, config)
    return frozenset(touched)


@dataclass(frozen=True)
class SuitePlan:
    """What a series will run, and why each configured suite is in or out."""

    stacks: frozenset[str]
    run: tuple[SuiteConfig, ...]
    left_out: tuple[tuple[str, str], ...]  # (suite, reason)


def plan_suites(paths: Iterable[str], config: Config, exists_in_base: Callable[[str], bool]) -> SuitePlan:
    """Pick the suites for a series touching `paths`, on a base tree where `exists_in_base` holds."""
    paths = list(paths)
    stacks = stacks_touched(paths, config)
    run, left_out = [], []
    for suite in config.suites.values():
        missing = [required for required in suite.requires if not exists_in_base(required)]
        if missing:
            left_out.append((suite.name, f"the base has no {', '.join(missing)}"))
        elif suite.always or (ANY_STACK in suite.stacks and paths) or stacks & set(suite.stacks):
            run.append(suite)
        else:
            left_out.append((suite.name, "the series touches none of its stacks"))
    return SuitePlan(stacks, tuple(run), tuple(left_out))
