"""Make text that came from a test or a mail harmless wherever it is shown: a reply, a terminal, a page.

Test names, failure texts, TAP diagnostics and mail subjects are written by whoever sent the
patch. Issue 11 item 8: a JUnit name with `&#10;` put a fake "every suite passed", a `-- `
signature and a `patchbot: apply master force` line at column 0 of a reply; TAP names carried
OSC 52 (clipboard) and clear-screen sequences into the reply and, through `patchbot log`, to the
operator's terminal. Every surface goes through this one module:

- `one_line`: names, messages, subjects: whitespace (newlines included) folded to one space,
  terminal escape sequences dropped, other control and format characters shown escaped;
- `printable`: multi-line text (excerpts, logs): the same, but newlines and tabs kept;
- `without_line_breaks`: what a terminal template shows of any value (patchbot.text.render);
- `without_machine_details`: for the list's eyes, no paths of the bot's machine nor process ids.

Escaped means shown as Python writes it (`\\x1b`, `\\u202e`): visible, so that a spoof attempt
can be seen for what it is, and inert on any terminal or mail reader.
"""

from __future__ import annotations

import re

# Terminal escape sequences, dropped whole (colours from pytest --color=yes are the common case):
# CSI (ESC [ or the 8-bit 0x9b), OSC (ESC ], up to BEL or ST: OSC 52 writes the clipboard),
# DCS/SOS/PM/APC (ESC P, X, ^, _ up to ST) and two-character ESC sequences. A sequence that is
# not terminated is not matched: its ESC is then shown escaped and the rest as plain text.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c\n]{0,4096}(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c\n]{0,4096}(?:\x1b\\|\x9c)"
    r"|\x1b[@-Z\\-_]"
)

# Characters never shown as they are: C0 controls but tab and newline, DEL, C1 controls, the
# Unicode line and paragraph separators, lone surrogates, and every format character (Unicode
# category Cf: bidi embeddings, overrides and isolates U+202A-202E and U+2066-2069, marks, zero
# widths, tags) except ZWNJ and ZWJ (U+200C, U+200D), which some scripts and emoji need.
# tests/security/test_attack_injection.py checks this class against unicodedata's Cf list.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_WHITESPACE_RUN = re.compile(r"[\s\u2028\u2029]+")
CUT_MARK = "[...]"


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape", "backslashreplace").decode("ascii")


def printable(text: str) -> str:
    """Multi-line text with escape sequences dropped and other control characters shown escaped.

    Line ends become "\\n" (a lone CR, which returns a terminal's cursor to column 0 to write
    over a line, is shown escaped); tabs stay.
    """
    text = _ESCAPE_SEQUENCE.sub("", text.replace("\r\n", "\n"))
    return _UNSAFE.sub(_escaped, text)


_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def without_line_breaks(text: str) -> str:
    """Each line break a space, and nothing else changed (a table's padding stays)."""
    return _LINE_BREAK.sub(" ", text)


def one_line(text: str, limit: int | None = None) -> str:
    """One line: every run of white space (line ends too) is one space; at most `limit` characters."""
    text = _WHITESPACE_RUN.sub(" ", _ESCAPE_SEQUENCE.sub("", text)).strip()
    text = _UNSAFE.sub(_escaped, text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - len(CUT_MARK))] + CUT_MARK
    return text


def capped_lines(text: str, max_lines: int, width: int, max_bytes: int) -> list[str]:
    """`printable` lines, each at most `width` characters, at most `max_lines` of them and
    `max_bytes` of UTF-8 in all; the cut is marked."""
    lines = []
    size = 0
    for line in printable(text).split("\n"):
        if len(line) > width:
            line = line[: width - len(CUT_MARK)] + CUT_MARK
        size += len(line.encode("utf-8", "replace")) + 1
        if len(lines) == max_lines or size > max_bytes:
            lines.append(CUT_MARK)
            break
        lines.append(line)
    return lines


# -- what the list must not learn about the machine -----------------------------------------

# A path under a folder where a machine keeps its own things (state, work, temporary files,
# processes, cgroups, homes, configuration), not preceded by what would make it part of a URL, a
# relative path or a word. Other absolute paths stay: "/rpc/?type=info" in an assertion about an
# HTTP endpoint is the project's, not the machine's.
_PATH_CHARS = r"[\w.@+%=~-]"
_MACHINE_FOLDERS = ("tmp", "var", "srv", "home", "root", "run", "proc", "sys", "etc", "opt", "mnt", "media", "data",
                    "dev/shm")
_NOT_AFTER = r"(?<![\w.@+%=~:/\\-])"
_MACHINE_PATH = re.compile(rf"{_NOT_AFTER}/(?:{'|'.join(_MACHINE_FOLDERS)})(?!{_PATH_CHARS})(?:/{_PATH_CHARS}*)*")
# A worktree of a run is <work>/worktrees/run-<pid>-<random>/: what follows is the project's own.
_IN_WORKTREE = re.compile(r"/worktrees/[^/]+/(.*)")
_IN_PACKAGES = re.compile(r"/((?:site|dist)-packages/.*)")
_PROCESS_ID = re.compile(r"\b(pids?|PIDs?|process(?: id)?|task)([ =:#]+)\d+", re.IGNORECASE)
MACHINE_PATH = "<path>"


def _public_path(path: str) -> str:
    if inside := _IN_WORKTREE.search(path):
        return inside.group(1) or "."
    if packages := _IN_PACKAGES.search(path):
        return f".../{packages.group(1)}"
    return MACHINE_PATH


def without_machine_details(text: str, folders: tuple[str, ...] = ()) -> str:
    """Text for the list: paths in a worktree made relative to it, every other path under the
    machine's folders (/tmp, /var, /srv, /proc/<pid>, /sys/fs/cgroup ..., and `folders`: the
    configured work and state folders) replaced by "<path>", and process ids by "N"."""
    for folder in sorted(folders, key=len, reverse=True):
        folder = folder.rstrip("/")
        if folder:
            text = re.sub(rf"{_NOT_AFTER}{re.escape(folder)}(?!{_PATH_CHARS})(?:/{_PATH_CHARS}*)*",
                          lambda match: _public_path(match.group()), text)
    text = _MACHINE_PATH.sub(lambda match: _public_path(match.group()), text)
    return _PROCESS_ID.sub(lambda match: f"{match.group(1)}{match.group(2)}N", text)
