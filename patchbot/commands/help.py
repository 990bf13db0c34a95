"""`patchbot: help`: the commands, from their own descriptions."""

from __future__ import annotations

from patchbot.commands.protocol import CommandContext, CommandOutcome
from collections.abc import Callable, Mapping

from patchbot.commands.protocol import Command
from patchbot.commands.authorize import AUTHOR, MAINTAINER
from patchbot.text.render import render
from patchbot.store.records import SeriesRecord


class Help:
    """Lists the commands the registry gives it (registry.py makes it; importing the registry here
    would be an import cycle)."""

    name = "help"
    arguments = ""
    allowed = (MAINTAINER, AUTHOR)
    description = "list the commands"

    def __init__(self, all_commands: Callable[[], Mapping[str, Command]]):
        self._all_commands = all_commands

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        commands = [{"usage": f"{command.name} {command.arguments}".strip(), "description": command.description,
                     "who": "maintainers and the series' author" if AUTHOR in command.allowed else "maintainers"}
                    for command in self._all_commands().values()]
        return CommandOutcome.done(render("commands/help.txt", commands=commands).rstrip("\n"))

