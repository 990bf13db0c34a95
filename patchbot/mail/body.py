"""Extract the readable text of a mail: its plain-text and diff parts, decoded, LF-only."""

from __future__ import annotations

import codecs
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
