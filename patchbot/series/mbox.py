"""Write a stored series as an mbox that `git am` applies: its patches in order, with the review
trailers its thread gave (the ones `patchbot: apply` adds, from commands/apply.py).

The mbox is mboxrd, as public-inbox serves it (`From mboxrd@z Thu Jan  1 00:00:00 1970`
separators, every `>*From ` line of a mail given one more `>`), so that a commit message with
a line that looks like a separator ("From 1234 Mon Sep 17 00:00:00 2001") comes back as it was:
`git am --patch-format=mboxrd` undoes the quoting. Plain `git am` applies it too, but keeps the
added `>` in such lines.

The trailers go where `git commit --trailer` puts them: `git interpret-trailers` writes them at
the end of the commit message, above the `---` line, into the trailer block the patch has (its
Signed-off-by), once each. A mail whose text is base64 or quoted-printable is decoded first and
written as 8bit UTF-8; a multipart mail (a patch sent as an attachment) is written as it came,
without trailers (SeriesMbox.untouched names it).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path

from patchbot.testing.apply import GitError, git
from patchbot.commands.apply import collected_trailers
from patchbot.config.records import Config
from patchbot.mail.charset import decode_with_fallback
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord

SEPARATOR = b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_LEADING_FROM_LINE = re.compile(rb"\AFrom [^\n]*\n")
_TRANSFER_ENCODING = re.compile(rb"^content-transfer-encoding:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)
_CONTENT_TYPE = re.compile(rb"^content-type:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class SeriesMbox:
    """One series version as an mbox, and what went into it."""

    series: SeriesRecord
    data: bytes
    patches: tuple[int, ...]  # the patch numbers written, in order
    trailers: int  # review trailers added, over all patches
    untouched: tuple[int, ...] = ()  # patches written without their trailers (multipart mails)

    @property
    def missing(self) -> tuple[int, ...]:
        """Patch numbers an incomplete series lacks."""
        return tuple(number for number in range(1, (self.series.total or 0) + 1) if number not in self.patches)


def series_mbox(store: Store, config: Config, series: SeriesRecord) -> SeriesMbox:
    trailers = collected_trailers(store, config, series)
    mails, added, untouched = [], 0, []
    for slot in series.patches:
        raw = _LEADING_FROM_LINE.sub(b"", store.raw_mail(slot.mail_id).replace(b"\r\n", b"\n"), count=1)
        wanted = trailers.get(slot.number, [])
        mail = with_trailers(raw, wanted) if wanted else raw
        if mail is None:
            untouched.append(slot.number)
            mail = raw
        added += len(wanted) if mail is not raw else 0
        mails.append(mail)
    return SeriesMbox(series, mboxrd(mails), tuple(slot.number for slot in series.patches), added, tuple(untouched))


def version_of(store: Store, series: SeriesRecord, version: int) -> SeriesRecord | None:
    """Version `version` of the series `series` is a version of (older ones through the re-roll
    links, newer ones through their re-rolls), or None."""
    seen: set[int] = set()
    current: SeriesRecord | None = series
    while current is not None and current.id not in seen and current.version > version:
        seen.add(current.id)
        current = store.series(current.supersedes_id) if current.supersedes_id else None
    while current is not None and current.id not in seen and current.version < version:
        seen.add(current.id)
        current = store.newer_version(current.id)
    return current if current is not None and current.version == version else None


def with_trailers(mail: bytes, trailers: list[str]) -> bytes | None:
    """The patch mail (LF line ends) with the trailers in its commit message, or None when it is
    multipart and its message cannot be told apart from its attachments."""
    head, _, body = mail.partition(b"\n\n")
    message = BytesParser(policy=compat32).parsebytes(head + b"\n\n", headersonly=True)
    if message.is_multipart() or message.get_content_maintype() == "multipart":
        return None
    encoding = str(message.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable"):
        head, body = _as_8bit_utf8(head + b"\n", message, body)
        head = head.rstrip(b"\n")
    return head + b"\n\n" + _trailers_added(body, trailers)


def _as_8bit_utf8(head: bytes, message: Message, body: bytes) -> tuple[bytes, bytes]:
    """The body decoded (base64, quoted-printable; its charset) and its headers saying 8bit UTF-8."""
    decoder = BytesParser(policy=compat32).parsebytes(head + b"\n" + body)
    text = decode_with_fallback(decoder.get_payload(decode=True) or b"", message.get_content_charset())
    head = _TRANSFER_ENCODING.sub(b"", head)
    head = _CONTENT_TYPE.sub(b"", head)
    head += b"Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
    return head, text.encode("utf-8")


def _trailers_added(body: bytes, trailers: list[str]) -> bytes:
    """git interpret-trailers, as `git commit --trailer` adds them (addIfDifferent, like apply)."""
    arguments = [argument for trailer in trailers for argument in ("--trailer", trailer)]
    # A mail's body lacks the commit's title (it is the Subject): git would take a body that is
    # only "Signed-off-by: ..." for the title and open a second trailer block below it.
    title = b"title\n\n"
    # Run outside any repository: a repository's trailer.* settings must not change the result.
    with tempfile.TemporaryDirectory(prefix="patchbot-trailers-") as folder:
        written = git("-c", "trailer.ifexists=addIfDifferent", "interpret-trailers", *arguments,
                      cwd=Path(folder), stdin=title + body).stdout
    if not written.startswith(title):
        raise GitError(f"git interpret-trailers changed the title line: {written[:80]!r}")
    return written[len(title):]


def mboxrd(mails: list[bytes]) -> bytes:
    """Mails (LF line ends) as one mboxrd file: a separator each, `>*From ` lines quoted once more."""
    parts = []
    for mail in mails:
        if not mail.endswith(b"\n"):
            mail += b"\n"
        parts.append(SEPARATOR + _FROM_LINE.sub(rb">\1", mail) + b"\n")
    return b"".join(parts)
