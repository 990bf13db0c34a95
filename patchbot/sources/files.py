"""Read mail from files: mbox archives (gzipped too), Maildir folders, single raw mails, standard input.

Which one a path is, is sniffed, not assumed: real mail files often lack the mbox `From `
line. mbox files are streamed a message at a time (the stdlib's mailbox.mbox indexes the
whole file and needs to seek, which standard input cannot), so memory stays flat whatever
the archive's size.
"""

from __future__ import annotations

import gzip
import mailbox
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from patchbot.sources import RawMail, UnreadableSource

# A separator line as mboxes write it: "From sender date" (git: "From <sha> Mon Sep 17 00:00:00 2001").
_FROM_LINE = re.compile(rb"^From \S+.*\d{1,2}:\d{2}")


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
            # A list archive's export comes gzipped (HyperKitty's .mbox.gz): read it as it is.
            stream = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
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
    """An mbox when its first non-blank line is a From_ line, else a single mail."""
    try:
        lines = iter(stream)
        first = b""
        for first in lines:
            if first.strip():
                break
        if not _FROM_LINE.match(first):
            yield RawMail(first + b"".join(lines), origin)
            return
        yield from _split_mbox(lines, origin)
    except (OSError, EOFError) as error:  # EOFError: a gzip file cut short
        raise UnreadableSource(f"{origin}: {error}") from error


def _split_mbox(lines: Iterable[bytes], origin: str) -> Iterator[RawMail]:
    """Messages of an mbox whose first From_ line has been read already."""
    current: list[bytes] = []
    index = 0
    previous_blank = True
    for line in lines:
        if previous_blank and _FROM_LINE.match(line):
            yield RawMail(_message_bytes(current), f"{origin}#{index}")
            current, index = [], index + 1
            previous_blank = True
            continue
        current.append(line)
        previous_blank = not line.strip()
    yield RawMail(_message_bytes(current), f"{origin}#{index}")


def _message_bytes(lines: list[bytes]) -> bytes:
    # The blank line before the next From_ line belongs to the mbox, not the message.
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    return b"".join(lines)
