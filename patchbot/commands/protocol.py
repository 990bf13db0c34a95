"""What a command is (the Command protocol), what it may use and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from patchbot.config.records import Config
from patchbot.store.database import Store
from patchbot.store.records import MailRecord, SeriesRecord, StoredTestRun


class Status(Enum):
    DONE = "done"
    REFUSED = "refused"
    IGNORED = "ignored"  # not a command patchbot knows, or arguments it cannot use


@dataclass(frozen=True)
class CommandOutcome:
    """What came of one command line: the acknowledgement shows `text` under its status."""

    status: Status
    text: str
    rule: str = ""  # the authorization rule that refused it, when one did

    @classmethod
    def done(cls, text: str) -> "CommandOutcome":
        return cls(Status.DONE, text)

    @classmethod
    def refused(cls, text: str, rule: str = "") -> "CommandOutcome":
        return cls(Status.REFUSED, text, rule)

    @classmethod
    def ignored(cls, text: str) -> "CommandOutcome":
        return cls(Status.IGNORED, text)


@dataclass(frozen=True)
class CommandContext:
    """What a command may use: the store, the config, the work folder, the mail that asked."""

    store: Store
    config: Config
    work: Path
    mail: MailRecord  # the reply carrying the command (facts present: it was filed)
    sender: str  # its sender's address, lower case


class Command(Protocol):
    """One verb of `patchbot: <verb> [arguments]`.

    `name` is the verb; `arguments` how its arguments read in help ("[suite]", "<ref>");
    `allowed` the roles that may use it ("maintainer", "author": the series' own author);
    `description` its one line in templates/commands/help.txt. `run` does it for one series and
    returns what to acknowledge; it raises nothing for a person's mistake (that is an outcome),
    and commits its own store writes.
    """

    name: str
    arguments: str
    allowed: tuple[str, ...]
    description: str

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome: ...


def latest_run_of_current(context: CommandContext, series: SeriesRecord) -> StoredTestRun | CommandOutcome:
    """The series' latest test run, or the refusal a command acting on it gives: the series is
    obsolete, or was never tested."""
    if series.obsolete:
        return CommandOutcome.refused("a newer version of this series supersedes it")
    run = context.store.latest_test_run(series.id)
    if run is None:
        return CommandOutcome.refused("this series has not been tested yet")
    return run
