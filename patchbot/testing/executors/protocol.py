"""What an executor is given (a Workspace per tree) and gives back (one SuiteRun per suite)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from patchbot.config.records import Config
from patchbot.testing.environments import MissingEnvironment
from patchbot.testing.verdict import SuiteResult

log = logging.getLogger(__name__)


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
