"""`patchbot: help`: the commands, from their own descriptions."""

from __future__ import annotations

from patchbot.commands.protocol import CommandContext, CommandOutcome
from patchbot.commands.registry import all_commands
from patchbot.commands.authorize import AUTHOR, MAINTAINER
from patchbot.text.render import render
from patchbot.store.records import SeriesRecord


class Help:
    name = "help"
    arguments = ""
    allowed = (MAINTAINER, AUTHOR)
    description = "list the commands"

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        commands = [{"usage": f"{command.name} {command.arguments}".strip(), "description": command.description,
                     "who": "maintainers and the series' author" if AUTHOR in command.allowed else "maintainers"}
                    for command in all_commands().values()]
        return CommandOutcome.done(render("commands/help.txt", commands=commands).rstrip("\n"))


COMMANDS = (Help(),)
