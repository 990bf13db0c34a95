"""The command grammar, as a table: what counts as a command line in a reply and what does not."""

from __future__ import annotations

import pytest

from patchbot.commands.parse import CommandLine, command_lines


@pytest.mark.parametrize("text, expected", [
    ("patchbot: retest\n", [("retest", ())]),
    ("Thanks!\n\npatchbot: apply master\n", [("apply", ("master",))]),
    ("PATCHBOT: Retest python\n", [("retest", ("python",))]),
    ("  patchbot:   test   pu  \n", [("test", ("pu",))]),
    ("patchbot: apply master force\n", [("apply", ("master", "force"))]),
    ("patchbot: status\r\npatchbot: help\r\n", [("status", ()), ("help", ())]),
    # quoted: someone else's command, not this mail's
    ("> patchbot: apply master\n", []),
    ("  > patchbot: apply master\n", []),
    (">> patchbot: retest\n", []),
    # below the signature separator (and the one whose trailing space a mailer stripped)
    ("Hi\n-- \nJane\npatchbot: retest\n", []),
    ("Hi\n--\npatchbot: retest\n", []),
    # not at the start of the line, or not our name
    ("I said patchbot: retest yesterday\n", []),
    ("patchbotx: retest\n", []),
    ("patchbot:\n", []),
    ("patchbot retest\n", []),
])
def test_command_lines(text, expected):
    assert [(line.verb, line.args) for line in command_lines(text)] == expected


def test_the_line_is_kept_as_written_for_the_acknowledgement():
    assert command_lines("  PatchBot: Retest  Python \n") == [CommandLine("retest", ("Python",), "PatchBot: Retest  Python")]


def test_a_mail_full_of_commands_is_read_only_so_far():
    assert len(command_lines("patchbot: status\n" * 500)) == 20
