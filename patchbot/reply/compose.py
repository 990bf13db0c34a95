"""Write a reply as the mail that goes out: addresses (IDNA, or SMTPUTF8 where a local part needs it),
threading headers folded where mail software expects them, the Message-ID made from the reply's key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from email import quoprimime
from email.message import EmailMessage
from email.parser import Parser
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime

from patchbot.config.records import Config
from patchbot.mail.headers import Address, addresses_of, formatted_address, message_ids_in
from patchbot.reply.report import Reply


# Header lines are kept to this width where the words allow (RFC 5322 2.1.1), and never
# longer than LINE_LIMIT: a word that long is encoded (a Subject's) or left out (an id).
LINE_WIDTH = 78
LINE_LIMIT = 998
ENCODED_WORD_MAX = 75  # RFC 2047 2
_ENCODED_WORD_FRAME = len("=?utf-8?q??=")

# The policy's folder RFC 2047-encodes a token that does not fit on a line (78 characters or
# more) and may fold before a header's first word. git format-patch's Message-IDs for
# @archlinux.org senders are 81-82 characters: every reply to one went out with
# `In-Reply-To: =?utf-8?q?=3C613364b7...?=`, an orphan in mutt, Thunderbird and public-inbox,
# and long subjects went out as `Subject: \n Re: ...` (issue 13). Those headers are written
# here as raw lines, which a policy with refold_source="none" leaves as they are; the headers
# it makes itself (From, To, Cc, Date, the MIME ones) it still folds and encodes.
_SEVEN_BIT = SMTP.clone(refold_source="none")
_EIGHT_BIT = SMTPUTF8.clone(refold_source="none")


def wire_address(addr: str) -> str:
    """How an address travels. An internationalised domain behind an ASCII local part goes as
    punycode (IDNA), which any relay takes; a non-ASCII local part stays as it is: only
    SMTPUTF8 carries it (there is no ASCII form of "jörg")."""
    local, _, domain = addr.rpartition("@")
    if local.isascii() and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # not a valid IDNA name: only SMTPUTF8 can carry it
    return f"{local}@{domain}"


def needs_smtputf8(address: str) -> bool:
    return not address.isascii()


def message_id_for(key: str, domain: str, instance: str) -> str:
    """Derived from the reply's key and the database's random id (store.instance_id): a resend
    after a crash carries the same id, and two databases never make the same one (a hash of
    the key alone repeated across staging and production, and archives dropped one)."""
    digest = hashlib.sha256(f"{instance}/{key}".encode()).hexdigest()[:32]
    return f"<patchbot.{digest}@{domain}>"


def _clean(value: str) -> str:
    # Values come from mails (subjects, names): no line break may reach a header.
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def _inert(value: str) -> str:
    # The email package decodes RFC 2047 words in a value it is handed and (before Python
    # 3.11.10) writes a decoded line break as one: a double-encoded subject or a Message-ID
    # `<=?utf-8?q?=0D=0ABcc:...?=>` put headers and text of the attacker's in our reply.
    return _clean(value).replace("=?", "= ?")


def _people(values) -> list[Address]:
    """The usable addresses of header values, in wire form (see wire_address)."""
    return [Address(_inert(found.name), wire_address(found.addr)) for value in values for found in addresses_of(_clean(value))]


def _header(people: list[Address]) -> str:
    return ", ".join(formatted_address(person.name, person.addr) for person in people)


def folded(name: str, words: Sequence[str]) -> str:
    """A header value of `words`, one space or a fold between two, as set_raw takes it: the
    first word on the header's own line (never `Subject: \n Re: ...`), a fold only where the
    next word would pass LINE_WIDTH; a line is longer only where one word is."""
    lines = [words[0] if words else ""]
    width = len(name) + 2 + len(lines[0])
    for word in words[1:]:
        if width + 1 + len(word) <= LINE_WIDTH:
            lines[-1] += " " + word
            width += 1 + len(word)
        else:
            lines.append(" " + word)
            width = 1 + len(word)
    return "\n".join(lines)


def subject_words(subject: str, utf8: bool) -> list[str]:
    """The words of a Subject as written: ASCII words as they are (any word in a UTF-8 mail);
    a run of other words as RFC 2047 encoded words with the spaces inside, since a reader
    drops the white space between two encoded words."""
    words: list[str] = []
    run: list[str] = []
    for word in subject.encode("utf-8", "replace").decode("utf-8").split(" "):
        if (utf8 or word.isascii()) and len("Subject: ") + len(word) <= LINE_LIMIT:
            if run:
                words.extend(_encoded_words(" ".join(run)))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words.extend(_encoded_words(" ".join(run)))
    return words


def _encoded_words(text: str) -> list[str]:
    """`text` as Q-encoded UTF-8 words of at most ENCODED_WORD_MAX characters, never splitting
    a character (RFC 2047 5)."""
    chunks, length = [""], 0
    for character in text:
        size = quoprimime.header_length(character.encode())
        if chunks[-1] and length + size > ENCODED_WORD_MAX - _ENCODED_WORD_FRAME:
            chunks.append("")
            length = 0
        chunks[-1] += character
        length += size
    return [quoprimime.header_encode(chunk.encode(), "utf-8") for chunk in chunks]


def thread_ids(values: Iterable[str]) -> list[str]:
    """The `<id>` tokens of values, each once, that fit on a header line; nothing else (a line
    break, a name, a comment): message_ids_in keeps printable ASCII ids only."""
    longest = LINE_LIMIT - len("In-Reply-To: ")
    return [_inert(token) for token in message_ids_in(" ".join(values)) if len(token) <= longest]


def compose(reply: Reply, config: Config, now: datetime | None = None, instance: str = "") -> tuple[str, bytes]:
    """The reply as mail bytes, with its Message-ID (made of `instance`, the store's
    instance_id, and the reply's key; a test that reads only the text may leave it out).

    Display names are RFC 2047-encoded; when an address has a non-ASCII local part the whole
    mail is UTF-8 (RFC 6532), to be sent with SMTPUTF8 (or without that address, see _transaction).
    Subject, Message-ID, In-Reply-To and References are raw lines folded by `folded`."""
    sender, to, cc = _people([config.mail.sender]), _people(reply.to), _people(reply.cc)
    utf8 = any(needs_smtputf8(person.addr) for person in (*sender, *to, *cc))
    message = EmailMessage(policy=_EIGHT_BIT if utf8 else _SEVEN_BIT)
    message_id = message_id_for(reply.key, config.mail.message_id_domain, instance)
    message["From"] = _header(sender) if sender else _clean(config.mail.sender)
    message["To"] = _header(to)
    if cc:
        message["Cc"] = _header(cc)
    message.set_raw("Subject", folded("Subject", subject_words(_inert(reply.subject), utf8)))
    message["Date"] = format_datetime(now or datetime.now(timezone.utc))
    message.set_raw("Message-ID", message_id)
    parent = thread_ids([reply.in_reply_to or ""])[:1]
    if parent:
        message.set_raw("In-Reply-To", parent[0])
        # The parent last (RFC 5322 3.6.4), whatever the references held.
        references = [token for token in thread_ids(reply.references) if token != parent[0]]
        message.set_raw("References", folded("References", [*references, *parent]))
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834: no auto-responder answers this
    message["X-Patchbot-Series"] = _inert(reply.series_tag)
    message.set_content(reply.body, charset="utf-8")
    return message_id, message.as_bytes()


def without_recipients(data: bytes, dropped: set[str]) -> bytes:
    """A UTF-8 reply made fit for a relay without SMTPUTF8: the addresses that need it left out
    of To and Cc, the headers encoded as RFC 2047 again. The body (and the Message-ID) stay."""
    head, _, body = data.partition(b"\r\n\r\n")
    parsed = Parser(policy=_EIGHT_BIT).parsestr(head.decode("utf-8", "replace") + "\r\n\r\n", headersonly=True)
    message = EmailMessage(policy=_SEVEN_BIT)
    for name, value in parsed.raw_items():
        if name.lower() in ("to", "cc"):
            kept = [Address(found.display_name, found.addr_spec) for found in parsed[name].addresses
                    if found.addr_spec.lower() not in dropped]
            if kept:
                message[name] = _header(kept)
        elif value.isascii():
            message.set_raw(name, value)  # as composed: the ids and their folds stay
        elif name.lower() == "subject":
            message.set_raw(name, folded(name, subject_words(value.replace("\r", "").replace("\n", ""), utf8=False)))
        else:
            message[name] = value  # a display name of From, encoded (RFC 2047)
    return message.as_bytes() + body
