"""Find the command lines of a reply: `patchbot: <verb> [arguments]`, not quoted, above the signature."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import compat32

from patchbot.mail.body import text_of_body

_COMMAND = re.compile(r"^\s*patchbot:[ \t]*(\S+)[ \t]*(.*?)\s*$", re.IGNORECASE)
# RFC 3676 4.3 says "-- "; some mailers strip the trailing space.
SIGNATURE_SEPARATORS = ("-- ", "--")
MAX_COMMANDS_PER_MAIL = 20  # past this, a mail is a list of commands nobody typed by hand


@dataclass(frozen=True)
class CommandLine:
    verb: str  # lower case
    args: tuple[str, ...]
    line: str  # as written, for the acknowledgement


def command_lines(text: str) -> list[CommandLine]:
    """The command lines of a reply's text, in order."""
    found = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.rstrip("\n") in SIGNATURE_SEPARATORS:
            break
        if line.lstrip().startswith(">"):
            continue
        match = _COMMAND.match(line)
        if match:
            found.append(CommandLine(match.group(1).lower(), tuple(match.group(2).split()), line.strip()))
            if len(found) == MAX_COMMANDS_PER_MAIL:
                break
    return found


def text_of_mail(raw: bytes) -> str:
    """A mail's readable text, as patchbot.mail reads it."""
    return text_of_body(BytesParser(policy=compat32).parsebytes(raw))


def commands_in_mail(raw: bytes) -> list[CommandLine]:
    return command_lines(text_of_mail(raw))
