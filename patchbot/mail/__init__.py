"""Turn a mail's raw bytes into a ParsedMail: who, when, which thread, what kind, what diff.

`parse_mail` never raises for bad input other than MailRejected, which names the reason; the
caller stores the raw bytes either way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from enum import Enum

from patchbot.mail.body import text_of_body
from patchbot.mail.classify import Kind, classify
from patchbot.mail.diff import FileChange, files_touched, find_pull_url, split_text
from patchbot.mail.headers import (
    Address,
    address_of,
    addresses_of,
    date_of,
    dmarc_author,
    message_id_of,
    message_ids_in,
    text_of,
)
from patchbot.mail.subject import Subject, parse_subject
from patchbot.mail.trailers import Trailer, parse_trailers
from patchbot.series.pulls import PullRequest, parse_pull_request

__all__ = ["Kind", "MailRejected", "ParsedMail", "RejectReason", "parse_mail", "synthetic_message_id"]

# Beyond this a mail is kept but not parsed: no patch of that size is reviewed by mail.
MAX_PARSED_BYTES = 32 * 1024 * 1024
SYNTHETIC_DOMAIN = "synthetic.patchbot.invalid"


class RejectReason(Enum):
    """Why a stored mail was not classified; the value is the text logs and summaries show."""

    EMPTY = "empty: no bytes at all"
    NO_HEADERS = "not a mail: no header lines"
    NO_SENDER = "no usable sender address in From"
    TOO_LARGE = "too large to parse"
    UNPARSEABLE = "the email package could not parse it"


class MailRejected(Exception):
    def __init__(self, reason: RejectReason, detail: str = ""):
        super().__init__(reason.value + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ParsedMail:
    """Everything later stages need to know about one mail."""

    message_id: str
    synthetic_id: bool
    subject_text: str
    subject: Subject
    sender: Address  # the real author, recovered where the list rewrote From
    via_list: bool  # From was rewritten by the list (DMARC mitigation)
    date: datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]  # oldest first, as in the header
    list_id: str | None
    auto_submitted: str | None
    bounce: bool  # a delivery status notification, not a person's mail
    kind: Kind
    kind_rule: str  # the classification rule that decided the kind
    message: str  # commit message (or cover letter / reply text)
    diff: str
    diffstat: bool
    files: tuple[FileChange, ...]
    trailers: tuple[Trailer, ...]
    pull_url: str | None
    pull: PullRequest | None = None  # what a pull request asks to be pulled (pulls.py), read from all its prose

    @property
    def has_diff(self) -> bool:
        return bool(self.diff)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The ids this mail points at, closest first: In-Reply-To, then References reversed."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        ids.extend(ref for ref in reversed(self.references) if ref not in ids)
        return tuple(ids)

    def trailer_values(self, name: str) -> tuple[str, ...]:
        return tuple(trailer.value for trailer in self.trailers if trailer.name.lower() == name.lower())


def synthetic_message_id(data: bytes) -> str:
    """A stable id for a mail that has none: the hash of its bytes, line endings ignored."""
    digest = hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()[:32]
    return f"<{digest}@{SYNTHETIC_DOMAIN}>"


def message_id_for(data: bytes) -> tuple[str, bool]:
    """The Message-ID a mail is stored under (and whether it was made up), read cheaply.

    Only the header block is parsed, so that a mail already stored costs little to recognise.
    """
    header_end = data.find(b"\n\n")
    crlf_end = data.find(b"\r\n\r\n")
    ends = [end for end in (header_end, crlf_end) if end >= 0]
    head = data[: min(ends)] if ends else data
    message = BytesParser(policy=compat32).parsebytes(head, headersonly=True)
    msgid = message_id_of(_raw_header(message, "Message-ID"))
    return (msgid, False) if msgid else (synthetic_message_id(data), True)


def parse_mail(data: bytes) -> ParsedMail:
    """Parse a mail's bytes; MailRejected says why when it cannot be classified."""
    if not data.strip():
        raise MailRejected(RejectReason.EMPTY)
    if len(data) > MAX_PARSED_BYTES:
        raise MailRejected(RejectReason.TOO_LARGE, f"{len(data)} bytes")
    try:
        message = BytesParser(policy=compat32).parsebytes(data)
    except Exception as error:  # the stdlib parser is lenient; anything it raises is a reject
        raise MailRejected(RejectReason.UNPARSEABLE, f"{type(error).__name__}: {error}") from error
    if not message.keys():
        raise MailRejected(RejectReason.NO_HEADERS)
    from_header = _raw_header(message, "From")
    author = address_of(from_header)
    if author is None:
        raise MailRejected(RejectReason.NO_SENDER, text_of(from_header or "")[:80])
    list_post = address_of((_raw_header(message, "List-Post") or "").replace("mailto:", ""))
    sender, via_list = _real_author(message, author, list_post)

    msgid = message_id_of(_raw_header(message, "Message-ID"))
    synthetic = msgid is None
    if synthetic:
        msgid = synthetic_message_id(data)
    subject_text = text_of(_raw_header(message, "Subject") or "")
    subject = parse_subject(subject_text)
    text = text_of_body(message)
    split = split_text(text)
    in_reply_to = next(iter(message_ids_in(_raw_header(message, "In-Reply-To"))), None)
    references = message_ids_in(_raw_header(message, "References"))
    pull_url = find_pull_url(split.prose)
    auto_submitted = text_of(_raw_header(message, "Auto-Submitted") or "") or None
    kind, rule = classify(
        subject=subject,
        has_diff=bool(split.diff),
        diffstat=split.diffstat,
        pull_url=pull_url,
        in_thread=bool(in_reply_to or references),
    )
    return ParsedMail(
        message_id=msgid,
        synthetic_id=synthetic,
        subject_text=subject_text,
        subject=subject,
        sender=sender,
        via_list=via_list,
        date=date_of(_raw_header(message, "Date")),
        in_reply_to=in_reply_to,
        references=references,
        list_id=_list_id(_raw_header(message, "List-Id")),
        auto_submitted=auto_submitted,
        bounce=_is_bounce(message, author),
        kind=kind,
        kind_rule=rule,
        message=split.message,
        diff=split.diff,
        diffstat=split.diffstat,
        files=files_touched(split),
        trailers=parse_trailers(split.prose),
        pull_url=pull_url,
        pull=parse_pull_request(pull_url, split.prose),
    )


_BOUNCE_SENDERS = ("mailer-daemon@", "postmaster@")


def _is_bounce(message: Message, author: Address) -> bool:
    """A delivery report (RFC 3464) or a mail from a mail system's own address."""
    if author.addr.startswith(_BOUNCE_SENDERS):
        return True
    content_type = (_raw_header(message, "Content-Type") or "").lower()
    return "multipart/report" in content_type or (_raw_header(message, "Return-Path") or "").strip() == "<>"


def _raw_header(message: Message, name: str) -> str | None:
    """A header's raw value; compat32 never raises here, but may hand back a Header object."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return value if isinstance(value, str) else str(value)
    return None


def _real_author(message: Message, author: Address, list_post: Address | None) -> tuple[Address, bool]:
    """Undo DMARC From rewriting, where From is the list's own address (List-Post names it)."""
    return dmarc_author(author, list_post, _raw_header(message, "X-Original-From"),
                        _raw_header(message, "Reply-To"), _raw_header(message, "Cc"))


def _list_id(value: str | None) -> str | None:
    ids = message_ids_in(value)
    if ids:
        return ids[0][1:-1]
    text = text_of(value or "")
    return text or None
