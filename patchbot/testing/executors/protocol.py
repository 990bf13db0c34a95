"""What an executor is: the Executor protocol, the Workspace it is given, the SuiteRun it returns.

An executor runs a series' suites on one tree (the tip, or the base) and says how each ended.
local.py runs them here, each in a sandbox; gitlab.py on the project's GitLab CI. A new executor
is one module here implementing `Executor`, one branch in choose.py's executor_for, and its
name in config/records.py's EXECUTORS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from patchbot.config.records import Config, SuiteConfig
from patchbot.testing.environments import MissingEnvironment
from patchbot.testing.verdict import SuiteResult


@dataclass(frozen=True)
class Workspace:
    """What every suite of one run shares."""

    worktree: Path
    config: Config
    log_dir: Path  # each suite's whole output is kept here
    environments: Mapping[str, Path]  # prepared environment folders by name
    hidden_paths: tuple[Path, ...]  # the bot's own files, invisible inside the sandbox
    label: str = "tip"  # "tip" or "base", in log file names
    # Environments that are not there, by name: what a suite needing one reports instead of running.
    missing_environments: Mapping[str, MissingEnvironment] = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteRun:
    result: SuiteResult
    log: Path | None
    command: str
    attempts: int


@dataclass(frozen=True)
class TestedVersion:
    """Which series version the suites test, for executors that name it outside (a branch, a
    merge request); `description` reads the cover letter only when one asks for it."""

    __test__ = False

    series_id: int
    version: int
    title: str
    description: Callable[[], str]


class Executor(Protocol):
    """Runs the suites of one series version on one tree and says how each ended.

    `prepares_environments`: whether patchbot builds the suites' environments (a venv) before
    `run`, and hands them over in `Workspace.environments`; an executor whose jobs make their
    own says False. `run` returns one SuiteRun per suite, in the order given: a suite that could
    not run is a SuiteRun whose result says so (the machine's outcomes, never FAIL). When the
    executor itself cannot run at all (no token, its server down), it raises a TestRunError
    subclass: the test is retried later, and nothing is said on the list.
    """

    name: str
    prepares_environments: bool

    def run(self, suites: Sequence[SuiteConfig], workspace: Workspace, tested: TestedVersion) -> list[SuiteRun]: ...
