"""Every verb patchbot knows, in the order help lists them."""

from __future__ import annotations

from patchbot.commands.protocol import Command


def all_commands() -> dict[str, Command]:
    """Every verb, in the order help lists them."""
    from patchbot.commands import apply, help, ignore, retest, status, test, trust_deps

    commands = (*help.COMMANDS, *status.COMMANDS, *retest.COMMANDS, *test.COMMANDS, *ignore.COMMANDS, *apply.COMMANDS,
                *trust_deps.COMMANDS)
    return {command.name: command for command in commands}
