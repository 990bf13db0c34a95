"""Extract the readable text of a mail: its plain-text and diff parts, decoded, LF-only."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from email.message import Message

from patchbot.mail.charset import decode_with_fallback

# Parts that may carry prose or a patch; HTML alternatives are ignored, as Patchwork does.
TEXT_TYPES = frozenset({"text/plain", "text/x-patch", "text/x-diff", "text/x-csrc"})
ATTACHMENT_TYPES = frozenset({"application/octet-stream", "application/x-patch", "application/x-diff"})


def text_of_body(message: Message) -> str:
    """All text parts joined in order; CRLF normalised to LF before any diff parsing."""
    texts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = _content_type(part)
        if content_type not in TEXT_TYPES and content_type not in ATTACHMENT_TYPES:
            continue
        text = _decode_part(part)
        if content_type in ATTACHMENT_TYPES and "\n+++ " not in text and "GIT binary patch" not in text:
            continue  # an opaque attachment, not a diff
        texts.append(text)
    return "\n".join(texts).replace("\r\n", "\n").replace("\r", "\n")


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except (TypeError, ValueError, AttributeError):
        return "text/plain"


def _decode_part(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except (TypeError, ValueError, AssertionError, LookupError):
        payload = None
    if payload is None:
        raw = part.get_payload()
        payload = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    return decode_with_fallback(payload, _declared_charset(part))


def _declared_charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except (TypeError, ValueError, LookupError, AttributeError):
        return None
    if not charset or "\x00" in charset:
        return None
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        return None
    return charset


@dataclass(frozen=True)
class BodyPart:
    """The part of a mail its reader reads first: the one place commands are taken from."""

    text: str  # the first text/plain part, decoded, LF-only ("" when the body has none)
    html: str | None  # its text/html alternative (multipart/alternative), raw HTML; None without one


def first_text_part(message: Message) -> BodyPart:
    """The body's first text/plain part, found as a mail client shows it; never an attachment.

    From the top: a multipart/alternative shows its text/plain child (its text/html twin is
    kept, to compare); any other multipart (mixed, related, signed) shows its first part only,
    since what follows is attached; a part marked `Content-Disposition: attachment` is never
    the body, nor is a forwarded mail (message/rfc822). A maintainer's reply that attached a
    log with `patchbot: apply ... force` in it made patchbot apply, when commands were read
    from every text part.
    """
    part = message
    for _ in range(MAX_BODY_DEPTH):
        # A message/rfc822 part is a forwarded mail: someone else's words, whatever they say.
        if _is_attachment(part) or (part is not message and _content_type(part).startswith("message/")):
            return BodyPart("", None)
        if not part.is_multipart():
            if _content_type(part) != "text/plain":
                return BodyPart("", None)
            return BodyPart(_unflowed(part, _lf(_decode_part(part))), None)
        children = [child for child in (part.get_payload() or []) if isinstance(child, Message)]
        if not children:
            return BodyPart("", None)
        if _content_type(part) == "multipart/alternative":
            plain = next((child for child in children if not child.is_multipart()
                          and _content_type(child) == "text/plain" and not _is_attachment(child)), None)
            if plain is None:
                return BodyPart("", None)
            html = next((child for child in _leaves(children) if _content_type(child) == "text/html"), None)
            return BodyPart(_unflowed(plain, _lf(_decode_part(plain))), _decode_part(html) if html is not None else None)
        part = children[0]
    return BodyPart("", None)


MAX_BODY_DEPTH = 20  # nesting beyond this is fuzz, not a body


def _unflowed(part: Message, text: str) -> str:
    """The lines a reader sees of a format=flowed part (RFC 3676): a line ending in a space goes
    on in the next one (of the same quote depth). Read line by line, a paragraph the client
    wrapped at "... we need not say \npatchbot: ignore \nhere" was an `ignore` nobody wrote."""
    try:
        if (part.get_param("format") or "").lower() != "flowed":
            return text
        delsp = (part.get_param("delsp") or "").lower() == "yes"
    except (TypeError, ValueError, AttributeError):
        return text
    joined: list[list[str]] = []  # each seen line as its pieces: joined once, in linear time
    previous, depth = "", 0
    for line in text.split("\n"):
        line_depth = len(line) - len(line.lstrip(">"))
        if joined and previous.endswith(" ") and previous != "-- " and line_depth == depth:
            if delsp:
                joined[-1][-1] = joined[-1][-1][:-1]
            joined[-1].append(line[line_depth:])
        else:
            joined.append([line])
            depth = line_depth
        previous = line
    return "\n".join("".join(pieces) for pieces in joined)


def _leaves(parts: list[Message]) -> list[Message]:
    """The non-multipart parts under these, in order (an HTML twin may sit in multipart/related)."""
    found: list[Message] = []
    for part in parts:
        found.extend(leaf for leaf in part.walk() if not leaf.is_multipart())
    return found


def _is_attachment(part: Message) -> bool:
    try:
        return (part.get_content_disposition() or "") == "attachment"
    except (TypeError, ValueError, AttributeError):
        return True  # an unreadable disposition is not a body to take orders from


def _lf(text: str) -> str:
    # A lone CR is not a line break here: "see the log:\rpatchbot: apply ..." shows as one line
    # in many clients, and a command must start a line its sender saw.
    return text.replace("\r\n", "\n")
