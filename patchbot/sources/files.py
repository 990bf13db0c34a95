"""Read mail from files: mbox archives (gzipped too), Maildir folders, single raw mails, standard input.

Which one a path is, is sniffed, not assumed: real mail files often lack the mbox `From `
line, and a gzipped archive (HyperKitty's .mbox.gz, or one piped in) is known by its magic
bytes, not its name. mbox files are streamed a message at a time (the stdlib's mailbox.mbox
indexes the whole file and needs to seek, which standard input cannot), so memory stays flat
whatever the archive's size: one message (and, at a From_ line, the header block after it)
is held at a time.

What separates two mails. git's `mailsplit` takes a `From ` line that holds a time and a year
("From <sha> Mon Sep 17 00:00:00 2001"), wherever it stands; Python's `mailbox` takes every
line that begins with `From ` ("From A", "From nobody", "From MAILER-DAEMON ..."). Both are
separators here, with one guard each way, so that two mails are never stored as one and one
mail is never cut in two:

- a dated From_ line (git's rule) is a separator wherever it stands;
- any other `From ` line is a separator when a header block follows it (`Name: value` lines,
  then a blank line): git would merge the two mails there, and did (issue 14: a 5-mail archive
  written with `From A` lines was stored as one mail and `git am` made one commit of two
  patches). Such a separator that does not follow a blank line, where an mbox writer puts
  one, is logged: the mail before it was probably written without its end;
- a `From ` line followed by prose is the text of a mail whose writer did not escape it
  (Python's mailbox would make a mail without headers of it): it stays in its mail.

A file that does not start with a From_ line is one mail, its bytes untouched (no unescaping),
unless a `From ` line with a header block after it shows two mails put together.

Quoting. mboxo writers turn a body line "From ..." into ">From ..."; mboxrd writers (git
format-patch --pretty=mboxrd, public-inbox, b4) also add a `>` to ">From ..." lines, so that
reading can take one `>` off every `>+From ` line. Both dialects are read by the mboxrd rule,
as `git mailsplit --mboxrd` does: it is exact for mboxrd, and for mboxo it is exact for every
line the writer escaped; only a line that was ">From ..." before an mboxo writer saved it
loses its `>`, because mboxo wrote it the same as an escaped "From ..." (the information is
not in the file; public-inbox's and b4's readers decide the same). A file never says which
dialect wrote it (git format-patch's From_ line is the same in both).

mboxcl/mboxcl2: a `Content-Length:` header is followed when it lands exactly on the end of
the file or on the next From_ line (after its blank line); then the body is taken whole,
unscanned, and unescaped only if it holds no bare `From ` line (mboxcl2 escapes nothing).
A Content-Length that lands anywhere else is a relay's stale header and is ignored, as mutt
ignores it.
"""

from __future__ import annotations

import gzip
import io
import itertools
import logging
import mailbox
import re
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from patchbot.sources import RawMail, UnreadableSource

log = logging.getLogger(__name__)

# git mailsplit's is_from_line: "From " then, before the end, "d:dd:dd" and a year after 1990.
_DATED_FROM_LINE = re.compile(rb"^From .*\d:\d\d:\d\d\D*?(\d+)")
# "From :" (obsolete header syntax, space before the colon) is a header, never a separator.
_FROM_HEADER = re.compile(rb"^From\s*:")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")
_CONTINUATION = re.compile(rb"^[ \t]")
_ESCAPED_FROM = re.compile(rb"^>+From ")
_CONTENT_LENGTH = re.compile(rb"^Content-Length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$", re.IGNORECASE)
# A Content-Length beyond this is not followed (it would make one message hold the archive).
MAX_CONTENT_LENGTH = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def source_for(path: str) -> "FileSource":
    """The source a command-line path names: `-` for stdin, a Maildir, an mbox or one mail."""
    return FileSource(path)


class FileSource:
    """One path given on the command line; what it holds is sniffed when read."""

    def __init__(self, path: str):
        self.name = "stdin" if path == "-" else path
        self._path = path

    def mails(self) -> Iterator[RawMail]:
        if self._path == "-":
            yield from _read_stream(sys.stdin.buffer, "stdin")
            return
        path = Path(self._path)
        try:
            if path.is_dir():
                yield from _read_maildir(path)
                return
            stream = path.open("rb")
        except OSError as error:
            raise UnreadableSource(f"{path}: {error.strerror or error}") from error
        with stream:
            yield from _read_stream(stream, str(path))


def _read_maildir(path: Path) -> Iterator[RawMail]:
    if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
        raise UnreadableSource(f"{path}: a folder, but not a Maildir (no cur/, new/ and tmp/)")
    folder = mailbox.Maildir(path, factory=None, create=False)
    try:
        keys = sorted(folder.keys())
    except OSError as error:
        raise UnreadableSource(f"{path}: {error}") from error
    for key in keys:
        try:
            data = folder.get_bytes(key)
        except (OSError, KeyError):
            continue  # taken by another reader (a delivery agent moving it) since listing
        yield RawMail(data, f"{path}/{key}")


def _read_stream(stream: BinaryIO, origin: str) -> Iterator[RawMail]:
    """An mbox when its first non-blank line is a From_ line, else a single mail; gunzipped first."""
    try:
        stream = _gunzipped(stream)
        lines = iter(stream)
        first = b""
        for first in lines:
            if first.strip():
                break
        if not is_from_line(first):
            yield from _split_single_mail(_Lines(itertools.chain([first], lines)), origin)
            return
        yield from split_mbox(lines, origin)
    except (OSError, EOFError) as error:  # EOFError: a gzip file cut short; OSError: not gzip after all
        raise UnreadableSource(f"{origin}: {error}") from error


def _gunzipped(stream: BinaryIO) -> BinaryIO:
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered


def is_from_line(line: bytes) -> bool:
    """A line an mbox reader may take for a separator (whether it is one depends on what follows)."""
    return line.startswith(b"From ") and not _FROM_HEADER.match(line)


def is_dated_from_line(line: bytes) -> bool:
    """git mailsplit's separator: a From_ line holding a time and a year after 1990."""
    match = _DATED_FROM_LINE.match(line)
    return bool(match) and len(match.group(1)) <= 5 and int(match.group(1)) > 90


def _is_blank(line: bytes) -> bool:
    return line in (b"\n", b"\r\n")


class _Lines:
    """The lines of a stream, with lines read ahead put back to be read again (in order)."""

    def __init__(self, lines: Iterator[bytes]):
        self._lines = lines
        self._back: deque[bytes] = deque()

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> bytes:
        return self._back.popleft() if self._back else next(self._lines)

    def push_back(self, read_ahead: list[bytes]) -> None:
        self._back.extendleft(reversed(read_ahead))


def split_mbox(stream_lines: Iterator[bytes], origin: str) -> Iterator[RawMail]:
    """The messages of an mbox whose first From_ line has been read already (see the module's
    docstring for what separates, unescapes and follows Content-Length)."""
    lines = _Lines(stream_lines)
    current: list[bytes] = []
    verbatim = False  # the body was taken by its Content-Length: no unescaping
    index = 0
    previous_blank = True
    in_headers = True
    while True:
        line = next(lines, None)
        if line is None:
            break
        if is_from_line(line):
            separator, read_ahead = _separates(line, lines)
            lines.push_back(read_ahead)
            if separator:
                if not previous_blank and not is_dated_from_line(line):
                    log.warning("%s#%d: a From_ line (%r) not after a blank line starts another mail: "
                                "mail #%d was written without its end", origin, index + 1,
                                line.rstrip()[:60].decode("ascii", "replace"), index)
                yield _finished(current, verbatim, f"{origin}#{index}")
                current, verbatim, index = [], False, index + 1
                previous_blank, in_headers = True, True
                continue
        current.append(line)
        previous_blank = _is_blank(line)
        if in_headers and previous_blank:
            in_headers = False
            length = _content_length(current)
            if length is not None:
                body, after, fits = _body_of_length(lines, length)
                if fits:
                    current.extend(body)
                    verbatim = any(is_from_line(body_line) for body_line in body)
                    previous_blank = not body or _is_blank(body[-1])
                    lines.push_back(after)
                else:
                    lines.push_back(body + after)
    yield _finished(current, verbatim, f"{origin}#{index}")


def _split_single_mail(lines: _Lines, origin: str) -> Iterator[RawMail]:
    """A file that is not an mbox is one mail, its bytes as they are, unless a From_ line with a
    header block after it shows that mails were put together without the mbox's first From_
    line: then each is a mail of its own (and that is logged), never one mail holding two."""
    current: list[bytes] = []
    index = 0
    for line in lines:
        if is_from_line(line):
            separator, read_ahead = _separates(line, lines, dated_is_enough=False)
            lines.push_back(read_ahead)
            if separator:
                log.warning("%s: not an mbox, yet a From_ line (%r) with a header block after it starts "
                            "another mail: read as mail #%d", origin, line.rstrip()[:60].decode("ascii", "replace"),
                            index + 1)
                yield _finished(current, True, f"{origin}#{index}")
                current, index = [], index + 1
                continue
        current.append(line)
    yield RawMail(b"".join(current), f"{origin}#{index}" if index else origin)


def _separates(line: bytes, lines: _Lines, dated_is_enough: bool = True) -> tuple[bool, list[bytes]]:
    """Whether a From_ line starts a mail, and the lines read ahead to decide (to be read again)."""
    if dated_is_enough and is_dated_from_line(line):
        return True, []
    read_ahead: list[bytes] = []
    headers = 0
    for following in lines:
        read_ahead.append(following)
        if _is_blank(following):
            return headers > 0, read_ahead
        if _HEADER_LINE.match(following) and not is_from_line(following):
            headers += 1
        elif not (headers and _CONTINUATION.match(following)):
            return False, read_ahead
    return headers > 0, read_ahead  # a header block cut by the end of the file


def _content_length(header_lines: list[bytes]) -> int | None:
    found = None
    for line in header_lines:
        if match := _CONTENT_LENGTH.match(line):
            if found is not None:
                return None  # two of them: neither is trusted
            found = int(match.group(1))
    return found if found is not None and found <= MAX_CONTENT_LENGTH else None


def _body_of_length(lines: _Lines, length: int) -> tuple[list[bytes], list[bytes], bool]:
    """Read `length` bytes of body, then what ends it: (the body, the lines read after it,
    whether the body ends the mail: the file ends, or a From_ line follows, after a blank
    line or not). Every line read goes back to the caller, to be read again as needed."""
    body: list[bytes] = []
    size = 0
    while size < length:
        line = next(lines, None)
        if line is None:
            return body, [], False
        body.append(line)
        size += len(line)
    after = list(itertools.islice(lines, 2))
    if size != length:
        return body, after, False
    ends = not after or is_from_line(after[0]) or (_is_blank(after[0]) and (len(after) == 1 or is_from_line(after[1])))
    return body, after, ends


def _finished(lines: list[bytes], verbatim: bool, origin: str) -> RawMail:
    # The blank line before the next From_ line belongs to the mbox, not the message.
    if lines and _is_blank(lines[-1]):
        lines = lines[:-1]
    if not verbatim:
        lines = [line[1:] if _ESCAPED_FROM.match(line) else line for line in lines]
    return RawMail(b"".join(lines), origin)
