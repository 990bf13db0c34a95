"""Where mail comes from: every source yields RawMail, the bytes exactly as delivered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

from patchbot import PatchbotError


@dataclass(frozen=True)
class RawMail:
    """One mail as it arrived, before any parsing.

    `data` holds the message bytes without any mbox `From ` separator line; `origin` says
    where it came from ("archive.mbox#12", "stdin", "lmtp") for logs and summaries.
    """

    data: bytes
    origin: str


class UnreadableSource(PatchbotError):
    """A source (file, folder, stream) could not be read at all."""


class Source(Protocol):
    """A place mail comes from.

    `mails()` yields each mail once, in the order the source holds them, and raises
    UnreadableSource when the source itself cannot be read (a missing file, a permission
    error); a malformed mail inside a readable source is still yielded, never skipped.
    """

    name: str

    def mails(self) -> Iterator[RawMail]: ...
