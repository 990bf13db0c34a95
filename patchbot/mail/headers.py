"""Decode mail headers into plain, safe text: names, addresses, ids, dates.

Headers arrive with raw 8-bit bytes, broken RFC 2047 words, unknown charsets, NULs and
folded white space; every function here returns clean text (or None) and never raises.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from patchbot.mail.charset import decode_with_fallback

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_SPACE_BETWEEN_WORDS = re.compile(r"(?<=\?=)\s+(?==\?)")
_WHITESPACE = re.compile(r"\s+")
_MSGID = re.compile(r"<([^<>\s]+)>")
# RFC 5322 caps a line at 998 characters; a longer id is fuzz, not an identifier.
MAX_MSGID_LENGTH = 995
MAX_ADDRESS_LENGTH = 254
# Ids kept of a References header: the root and the nearest ancestors (see message_ids_in).
MAX_THREAD_IDS = 100
# A local part of anything but specials; a domain of host-name characters only.
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[\w-]+(\.[\w-]+)*$")


def text_of(value: str) -> str:
    """Turn a raw header value (as the email package stores it) into clean text.

    Undoes surrogate-escaped 8-bit bytes (utf-8, else windows-1252), decodes RFC 2047
    words, strips NULs and collapses white space, folding included.
    """
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        raw = value.encode("ascii", "surrogateescape")
        value = decode_with_fallback(raw, None)
    if "=?" in value:
        value = _decode_encoded_words(value)
    value = value.replace("\x00", "")
    return _WHITESPACE.sub(" ", value).strip()


def _decode_encoded_words(value: str) -> str:
    """RFC 2047 words decoded; adjacent words of one charset are joined as bytes first, as the
    stdlib, mutt and Thunderbird do, since mailers split a character across two words."""
    value = _SPACE_BETWEEN_WORDS.sub("", value)
    pieces: list[str] = []
    pending: list[bytes] = []
    pending_charset = None
    position = 0

    def flush() -> None:
        if pending:
            pieces.append(decode_with_fallback(b"".join(pending), pending_charset))
            pending.clear()

    for match in _ENCODED_WORD.finditer(value):
        raw = _word_bytes(match.group(2).upper(), match.group(3))
        charset = match.group(1).split("*", 1)[0].lower()
        between = value[position:match.start()]
        if between or raw is None or charset != pending_charset:
            flush()
        pieces.append(between)
        if raw is None:
            pieces.append(match.group(0))  # not decodable: keep it as it was written
        else:
            pending.append(raw)
            pending_charset = charset
        position = match.end()
    flush()
    pieces.append(value[position:])
    return "".join(pieces)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding == "B":
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        return quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class Address:
    """A person's display name and mail address (lower-cased domain and local part)."""

    name: str
    addr: str

    def __str__(self) -> str:
        return f"{self.name} <{self.addr}>" if self.name else self.addr


# Characters that make a display name need quotes (RFC 5322 specials).
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


def formatted_address(name: str, addr: str) -> str:
    """`Name <addr>` for an address header, the name quoted where it needs it.

    Unlike email.utils.formataddr it never raises: a non-ASCII address (RFC 6532, "jörg@...")
    once crashed the acknowledgement of a command, and every restart crashed on the same mail.
    Nothing is encoded here; the outbox encodes names and decides how an address can travel."""
    name = " ".join(name.split())
    if not name:
        return addr
    if _SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


def address_of(value: str | None) -> Address | None:
    """The first usable address in a From/Reply-To style header, or None."""
    if not value:
        return None
    found = addresses_of(value)
    return found[0] if found else None


def addresses_of(value: str | None) -> list[Address]:
    """Every usable address in an address-list header (To, Cc), in order."""
    if not value:
        return []
    unfolded = _WHITESPACE.sub(" ", value.replace("\x00", ""))
    result = []
    for name, addr in getaddresses([unfolded]) if "," in unfolded else [parseaddr(unfolded)]:
        addr = text_of(addr).strip().lower()
        if len(addr) > MAX_ADDRESS_LENGTH or not _ADDRESS.match(addr):
            continue
        result.append(Address(text_of(name).strip(' "'), addr))
    return result


def message_id_of(value: str | None) -> str | None:
    """The `<id>` in a Message-ID header, or None when there is no usable one."""
    if not value:
        return None
    value = value.replace("\x00", "")
    match = _MSGID.search(value)
    if match:
        msgid = f"<{match.group(1)}>"
    else:
        token = value.strip()
        if not token or _WHITESPACE.search(token) or "<" in token or ">" in token:
            return None
        msgid = f"<{token}>"
    if len(msgid) > MAX_MSGID_LENGTH or not msgid.isascii() or not msgid.isprintable():
        return None
    return msgid


def message_ids_in(value: object) -> tuple[str, ...]:
    """The `<id>` tokens of a References or In-Reply-To header, in header order, each once;
    of a longer list only the first (the thread's root) and the last MAX_THREAD_IDS - 1.

    Thread lookup only needs the nearest ancestors (a mail's own parents are at the end of
    References) and the root; a References header of 120,000 ids once stalled the scheduler
    for a minute, and replies copy these ids into their own References. One pass, a set for
    the duplicates: linear in the header's length.

    `value` may be what the compat32 parser hands back for 8-bit text, a Header object: a
    reply whose References held one raw 8-bit byte crashed its acknowledgement on it."""
    if not value:
        return ()
    if not isinstance(value, str):
        value = str(value)
    kept = tuple(dict.fromkeys(
        f"<{token}>" for token in _MSGID.findall(value.replace("\x00", ""))
        if len(token) <= MAX_MSGID_LENGTH - 2 and token.isascii() and token.isprintable()
    ))
    if len(kept) > MAX_THREAD_IDS:
        kept = (kept[0], *kept[len(kept) - MAX_THREAD_IDS + 1:])
    return kept


def date_of(value: str | None) -> datetime | None:
    """The Date header as an aware UTC datetime, or None when it cannot be read."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(text_of(value))
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def dmarc_author(author: Address, list_address: Address | None, original_from: str | None,
                 reply_to: str | None, cc: str | None) -> tuple[Address, bool]:
    """Undo DMARC From rewriting ("Jane Doe via aur-dev <aur-dev@...>"): the real author, and
    whether From was rewritten.

    From was rewritten only when its address is the list's own address: a display name saying
    "via" proves nothing (`"Lena via aur-dev" <mallory@evil.example>` with `X-Original-From:
    lena@...` was taken for Lena). The real author is X-Original-From, else the Reply-To or Cc
    address that carries the same display name. This names the author for display and
    threading; whom to obey is decided by patchbot.commands.identity, with the configured
    list address and the list's DKIM signature.
    """
    if list_address is None or list_address.addr != author.addr:
        return author, False
    name = author.name.partition(" via ")[0]
    original = address_of(original_from)
    if original:
        return original, True
    for header in (reply_to, cc):
        for candidate in addresses_of(header):
            if candidate.name == name and candidate.addr != author.addr:
                return candidate, True
    return Address(name, author.addr), True
