"""Every verb patchbot knows, in the order help lists them: a new verb is one module and one entry here."""

from __future__ import annotations

from patchbot.commands import apply, help, ignore, retest, status, test, trust_deps
from patchbot.commands.protocol import Command


def all_commands() -> dict[str, Command]:
    """Every verb, in the order help lists them."""
    commands = (help.Help(all_commands), *status.COMMANDS, *retest.COMMANDS, *test.COMMANDS, *ignore.COMMANDS,
                *apply.COMMANDS, *trust_deps.COMMANDS)
    return {command.name: command for command in commands}
