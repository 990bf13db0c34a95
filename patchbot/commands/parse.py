"""Find the command lines of a reply: `patchbot: <verb> [arguments]`, in what its sender wrote.

Commands come only from the body's first text/plain part (never an attachment, never a later
part), above the first quoted or forwarded block and above the signature: below those lines
is someone else's text, which a maintainer's reply carries without vouching for it. An
Outlook-style top-post with the attacker's text unquoted below a `From: ... Sent: ...` block,
and a reply attaching a log in which a test printed `patchbot: apply master force`, made
patchbot push when every text line counted. When the part has an HTML twin (what most mail
clients show), each command must be visible in it too, else the mail's commands are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import compat32
from html.parser import HTMLParser

from patchbot.mail.body import first_text_part

_COMMAND = re.compile(r"^\s*patchbot:[ \t]*(\S+)[ \t]*(.*?)\s*$", re.IGNORECASE)
# RFC 3676 4.3 says "-- "; some mailers strip the trailing space.
SIGNATURE_SEPARATORS = ("-- ", "--")
MAX_COMMANDS_PER_MAIL = 20  # past this, a mail is a list of commands nobody typed by hand

# Where someone else's text starts: each line pattern is one mail client's habit.
_QUOTED = re.compile(r"^\s*>")
# "... wrote:" in the languages of the clients seen on lists; the verb may come before the name
# ("Am Montag schrieb Mallory <m@evil.example>:"). Cutting a line of one's own that merely looks
# like this only loses commands below it.
_ATTRIBUTION_END = re.compile(
    r"\b(wrote|writes|a écrit|schrieb|escribió|ha scritto|schreef|skrev|napisał|написал\w*)\b.*:\s*$", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^\s*(On|Le|Am|El|Il|Op|Em|Den|Dnia|W dniu)\s", re.IGNORECASE)
ATTRIBUTION_WRAP = 3  # an "On <date>, <name> <address>" line wrapped over up to this many lines
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|"
    r"Forwarded message|Weitergeleitete Nachricht|Message transféré)\s*-{2,}"
    r"|Begin forwarded message:|_{10,})\s*$", re.IGNORECASE)
_HEADER_BLOCK_FROM = re.compile(r"^\s*\*?(From|De|Von|Van|Från|Od)\s*:\*?\s", re.IGNORECASE)
_HEADER_BLOCK_NEXT = re.compile(r"^\s*\*?(Sent|Date|To|Subject|Cc|Gesendet|Envoyé|Enviado|An|Betreff|Objet)\s*:",
                                re.IGNORECASE)
HEADER_BLOCK_SPAN = 4  # Outlook's "From:" is followed by "Sent:", "To:", "Subject:" within this many lines


@dataclass(frozen=True)
class CommandLine:
    verb: str  # lower case
    args: tuple[str, ...]
    line: str  # as written, for the acknowledgement


@dataclass(frozen=True)
class CommandText:
    """What a command mail asks, and whether its parts agree about it."""

    lines: tuple[CommandLine, ...]
    refusal: str | None = None  # why none of them may act (the HTML twin shows something else)


def own_text(text: str) -> str:
    """The lines of a reply's text its sender wrote: up to the first quoted or forwarded block
    (`>` lines, an `On ... wrote:` attribution, wrapped too, an `-----Original Message-----` or
    forwarding separator, an Outlook `From:`/`Sent:` header block) or the signature."""
    lines = text.replace("\r\n", "\n").split("\n")
    end = len(lines)
    for index, line in enumerate(lines):
        above = _nonblank_above(lines, index) if _QUOTED.match(line) else 0
        if above and lines[above - 1].rstrip().endswith(":"):
            # The paragraph above a quote (a blank line between, as Apple Mail writes it) that ends
            # in ":" is an attribution in any language ("... escreveu:", "... <m@evil.example>:"); a
            # client wraps it over as many lines as the quoted sender's name takes, and that name
            # may hold a command line: cut where it starts.
            end = _paragraph_start(lines, above - 1)
            break
        if line.rstrip("\n") in SIGNATURE_SEPARATORS or _QUOTED.match(line) or _SEPARATOR.match(line):
            end = index
            break
        if _ATTRIBUTION_END.search(line):
            # The attribution may start a few lines up ("On Mon, ... at 10:00,\nLukas <...>\nwrote:"),
            # and a line in between could look like a command: cut where it starts.
            start = next((above for above in range(max(0, index - ATTRIBUTION_WRAP + 1), index + 1)
                          if _ATTRIBUTION_START.match(lines[above])), _paragraph_start(lines, index))
            end = start
            break
        if _HEADER_BLOCK_FROM.match(line) and any(_HEADER_BLOCK_NEXT.match(following)
                                                  for following in lines[index + 1:index + 1 + HEADER_BLOCK_SPAN]):
            end = index
            break
    return "\n".join(lines[:end])


def _nonblank_above(lines: list[str], index: int) -> int:
    """One past the last non-blank line above lines[index] (0 when there is none)."""
    while index and not lines[index - 1].strip():
        index -= 1
    return index


def _paragraph_start(lines: list[str], index: int) -> int:
    """The first line of the paragraph holding lines[index] (lines since the last blank one)."""
    while index and lines[index - 1].strip():
        index -= 1
    return index


def command_lines(text: str) -> list[CommandLine]:
    """The command lines of a reply's text, in order (only in the sender's own text)."""
    found = []
    for line in own_text(text).split("\n"):
        match = _COMMAND.match(line)
        if match:
            found.append(CommandLine(match.group(1).lower(), tuple(match.group(2).split()), line.strip()))
            if len(found) == MAX_COMMANDS_PER_MAIL:
                break
    return found


def commands_in_mail(raw: bytes) -> CommandText:
    """The commands of a mail's first text/plain part, checked against its HTML twin."""
    body = first_text_part(BytesParser(policy=compat32).parsebytes(raw))
    lines = tuple(command_lines(body.text))
    if lines and body.html is not None:
        shown = _words(visible_text(body.html))
        hidden = [line.line for line in lines if _words(line.line) not in shown]
        if hidden:
            return CommandText(lines, "the HTML part of this mail, which most mail clients show, does not show "
                                      + ", ".join(f'"{line}"' for line in hidden)
                                      + "; patchbot acts only on commands every reader of the mail sees")
    return CommandText(lines)


def _words(text: str) -> str:
    return " " + " ".join(text.split()).lower() + " "


def visible_text(html: str) -> str:
    """The text an HTML mail shows as written by its sender: no quoted (blockquote) or hidden parts."""
    reader = _VisibleText()
    try:
        reader.feed(html)
        reader.close()
    except Exception:  # noqa: BLE001 - html.parser is lenient; whatever it raises, nothing is shown
        return ""
    return "".join(reader.shown)


class _VisibleText(HTMLParser):
    _NEVER_SHOWN = frozenset({"head", "style", "script", "title", "template", "blockquote", "noscript"})
    _VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "wbr", "area", "base", "col", "source"})
    _HIDING = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])|"
                         r"opacity\s*:\s*0(?![.\d]*[1-9])", re.IGNORECASE)
    _QUOTE_CLASSES = re.compile(r"gmail_quote|moz-cite-prefix|divRplyFwdMsg|OutlookMessageHeader|"
                                r"yahoo_quoted|protonmail_quote", re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shown: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # open elements, and whether each hides its content

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.shown.append(" ")
        if tag in self._VOID:
            return
        values = {name.lower(): value or "" for name, value in attrs}
        hides = (tag in self._NEVER_SHOWN or "hidden" in values or bool(self._HIDING.search(values.get("style", "")))
                 or bool(self._QUOTE_CLASSES.search(values.get("class", "") + " " + values.get("id", ""))))
        self.stack.append((tag, hides))

    def handle_endtag(self, tag: str) -> None:
        self.shown.append(" ")
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if not any(hides for _, hides in self.stack):
            self.shown.append(data)
