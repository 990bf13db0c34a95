"""Find the diff in a mail's text and say which files it touches.

A line state machine (Patchwork's approach) separates the diff from the prose around it:
`diff --git` or `Index:` or a `---`/`+++` pair opens a file, `@@` hunks are counted line
by line so that a diff followed by a signature or quoted inside prose ends cleanly, and
`GIT binary patch`, mode-only and rename-only changes count as diffs. The files are then
described with unidiff; a file unidiff rejects is still reported, marked malformed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, auto

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_FILE_START = re.compile(r"^(diff --git |diff -|Index: )")
_HEADER = re.compile(
    r"^(index |new file mode |deleted file mode |old mode |new mode |similarity index |"
    r"dissimilarity index |rename from |rename to |copy from |copy to |={20,}|RCS file: |"
    r"retrieving revision |diff -|--- |\+\+\+ |Binary files )"
)
_BINARY_LINE = re.compile(r"^(literal \d+|delta \d+|[A-Za-z][0-9A-Za-z!#$%&()*+;<=>?@^_`{|}~-]*)$")
# No \s around line anchors: under MULTILINE it runs across lines and turns quadratic.
_DIFFSTAT = re.compile(r"^[ \t]*\d+ files? changed(, \d+ insertions?\(\+\))?(, \d+ deletions?\(-\))?[ \t]*$", re.MULTILINE)
_PULL_START = re.compile(r"^The following changes since commit", re.MULTILINE | re.IGNORECASE)
_PULL_AT = re.compile(r"^are available in the git repository at:[ \t]*$", re.MULTILINE | re.IGNORECASE)
_PULL_URL = re.compile(r"\s*([\w+-]+(?:://|@)[\w/.@:~%-]+(?:[ \t]*\n?[ \t]*(?![\w+-]+://)[\w/.@~+-]*)?)[ \t]*$", re.MULTILINE)
_MODE_LINE = re.compile(r"^(old mode|new mode|new file mode|deleted file mode|index) (?:\S+ )?(\d{6})$")
_PATH_IN_HEADER = re.compile(r"^(?:\+\+\+ (?:b/)?|Index: |diff --git a/\S+ b/)(\S+)")


@dataclass(frozen=True)
class FileChange:
    """One file a diff touches."""

    path: str
    old_path: str | None = None
    added: bool = False
    deleted: bool = False
    renamed: bool = False
    binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    lines_added: int = 0
    lines_removed: int = 0
    malformed: bool = False

    @property
    def mode_changed(self) -> bool:
        return bool(self.old_mode and self.new_mode and self.old_mode != self.new_mode)


@dataclass(frozen=True)
class SplitText:
    """A mail's text divided into the diff and the prose around it."""

    message: str  # the commit message: prose up to git's `---` line
    prose: str  # all text outside the diff, the message included
    diff: str  # the diff text, '' when there is none
    diffstat: bool  # the prose carries a `N files changed` line (cover letters do)
    segments: tuple[str, ...] = field(default=(), repr=False)  # the diff, one text per file


class _State(Enum):
    PROSE = auto()
    HEADER = auto()
    HUNK = auto()
    BINARY = auto()


def split_text(text: str) -> SplitText:
    """Separate prose from diff (text must already be LF-normalised)."""
    lines = text.split("\n")
    prose: list[str] = []
    segments: list[list[str]] = []
    state = _State.PROSE
    old_left = new_left = 0
    index = 0
    while index < len(lines):
        line = lines[index]
        if state is _State.HUNK:
            if old_left <= 0 and new_left <= 0 and not line.startswith("\\"):
                state = _State.HEADER
                continue
            first = line[:1]
            if first in (" ", ""):
                old_left, new_left = old_left - 1, new_left - 1
            elif first == "-":
                old_left -= 1
            elif first == "+":
                new_left -= 1
            elif first != "\\":
                state = _State.PROSE  # a hunk cut short: what follows is prose
                continue
            segments[-1].append(line)
        elif state is _State.BINARY:
            if _BINARY_LINE.match(line) or (line == "" and _binary_continues(lines, index)):
                segments[-1].append(line)
            else:
                state = _State.PROSE
                continue
        elif state is _State.HEADER and not _FILE_START.match(line) and (
            match := _HUNK.match(line)
        ):
            old_left = int(match.group(1)) if match.group(1) is not None else 1
            new_left = int(match.group(2)) if match.group(2) is not None else 1
            segments[-1].append(line)
            state = _State.HUNK
        elif state is _State.HEADER and line == "GIT binary patch":
            segments[-1].append(line)
            state = _State.BINARY
        elif _starts_file(line, lines, index, segments[-1] if state is _State.HEADER else None):
            segments.append([line])
            state = _State.HEADER
        elif state is _State.HEADER and _HEADER.match(line):
            segments[-1].append(line)
        else:
            state = _State.PROSE
            prose.append(line)
        index += 1
    segment_texts = tuple("\n".join(segment) + "\n" for segment in segments)
    prose_text = "\n".join(prose)
    return SplitText(
        message=_commit_message(prose),
        prose=prose_text,
        diff="".join(segment_texts),
        diffstat=bool(_DIFFSTAT.search(prose_text)),
        segments=segment_texts,
    )


def _starts_file(line: str, lines: list[str], index: int, open_header: list[str] | None) -> bool:
    """Whether `line` opens the next file, given the header lines of the file still open (if any).

    A header opened by `diff --git` or `Index:` owns its `---`/`+++` pair (and CVS's own
    `diff -u -r1.1` line); only a header that has its pair already is followed by a new file.
    """
    if line.startswith(("diff --git ", "Index: ")):
        return True
    has_pair = open_header is not None and any(header.startswith("--- ") for header in open_header)
    if open_header is not None and not has_pair:
        return False
    if line.startswith("diff -"):
        return True
    return line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ ")


def _binary_continues(lines: list[str], index: int) -> bool:
    following = lines[index + 1] if index + 1 < len(lines) else ""
    return following.startswith(("literal ", "delta "))


def _commit_message(prose: list[str]) -> str:
    end = prose.index("---") if "---" in prose else len(prose)
    return "\n".join(prose[:end]).strip("\n")


def files_touched(split: SplitText) -> tuple[FileChange, ...]:
    """Describe each file of the diff; unparseable files are kept, marked malformed."""
    if not split.diff:
        return ()
    try:
        return tuple(_file_change(patched) for patched in PatchSet(split.diff, metadata_only=True))
    except (UnidiffParseError, ValueError, IndexError):
        pass
    changes = []
    for segment in split.segments:
        try:
            changes.extend(_file_change(patched) for patched in PatchSet(segment, metadata_only=True))
        except (UnidiffParseError, ValueError, IndexError):
            changes.append(_malformed_change(segment))
    return tuple(changes)


def _file_change(patched) -> FileChange:
    renamed = bool(patched.is_rename)
    return FileChange(
        path=_strip_prefix(patched.path),
        old_path=_strip_prefix(patched.source_file) if renamed else None,
        added=_names_no_file(patched.source_file, patched.patch_info, "new file mode "),
        deleted=_names_no_file(patched.target_file, patched.patch_info, "deleted file mode "),
        renamed=renamed,
        binary=bool(patched.is_binary_file),
        old_mode=patched.source_mode,
        new_mode=patched.target_mode,
        lines_added=patched.added,
        lines_removed=patched.removed,
    )


def _names_no_file(path: str | None, header, mode_line: str) -> bool:
    """Whether a side of a file's diff is no file: `/dev/null` or git's mode line. unidiff's own
    is_added_file also says so of `@@ -0,0 +1 @@`, which is an edit of an empty file too."""
    return path == "/dev/null" or any(str(line).startswith(mode_line) for line in header or ())


def _strip_prefix(path: str | None) -> str:
    if path and path.startswith(("a/", "b/")):
        return path[2:]
    return path or ""


def _malformed_change(segment: str) -> FileChange:
    """What the header lines of a file unidiff rejects still tell."""
    lines = segment.split("\n")
    path = next((match.group(1) for line in lines if (match := _PATH_IN_HEADER.match(line))), "")
    headers = {match.group(1): match.group(2) for line in lines if (match := _MODE_LINE.match(line))}
    old_mode = headers.get("old mode") or headers.get("deleted file mode") or headers.get("index")
    new_mode = headers.get("new mode") or headers.get("new file mode") or headers.get("index")
    body = [line for line in lines if not _HEADER.match(line) and not _FILE_START.match(line)]
    return FileChange(
        path=path,
        added="new file mode" in headers,
        deleted="deleted file mode" in headers,
        old_mode=None if "new file mode" in headers else old_mode,
        new_mode=None if "deleted file mode" in headers else new_mode,
        lines_added=sum(1 for line in body if line.startswith("+")),
        lines_removed=sum(1 for line in body if line.startswith("-")),
        malformed=True,
    )


def find_pull_url(text: str) -> str | None:
    """The `URL BRANCH` of a git request-pull mail, on one line, or None."""
    start = _PULL_START.search(text)
    at = _PULL_AT.search(text, start.end()) if start else None
    match = _PULL_URL.match(text, at.end()) if at else None
    if not match:
        return None
    return re.sub(r"\s+", " ", match.group(1)).strip()
