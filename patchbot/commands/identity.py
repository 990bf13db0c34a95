"""Decide whom a reply in a thread can be believed to come from: the one check behind commands and trailers.

A From header is a claim; with `[commands] require_dkim` (the default) patchbot believes it
only when a DKIM signature of the From's domain verifies and covers every header patchbot
reads (dkim.py), when what patchbot's own parser read of those headers is what the signature
covers (parsers disagree on odd mails: a lone CR splits a header line for Python's email
package and not for dkimpy), and when the thread the signed headers name is the one the mail
was filed in. The stored sender of a mail (`MailFacts.sender`) is only a label: it is never
asked whom to obey.

A From the list rewrote for DMARC ("Jane via aur-dev <aur-dev@lists...>") names the list, not
a person. Only when From is the configured list address (`[mail] list`) is the person taken
from X-Original-From, else Reply-To, and with require_dkim only when a signature of the list's
domain covers that header too: `"Lena via aur-dev" <mallory@evil.example>` with
`X-Original-From: lena@...` was taken for Lena, because the display name said "via".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from patchbot.commands import dkim
from patchbot.config.records import Config
from patchbot.mail import MailRejected, parse_mail
from patchbot.mail.headers import address_of, addresses_of, date_of, message_id_of, message_ids_in, text_of
from patchbot.store.database import Store
from patchbot.store.records import MailRecord

# Where a list that rewrote From for DMARC keeps the original sender, in the order trusted.
ORIGINAL_SENDER_HEADERS = ("x-original-from", "reply-to")
# A Date this far after receipt is a wrong clock or a forgery that would stretch the age limit.
FUTURE_ALLOWANCE = timedelta(days=1)


@dataclass(frozen=True)
class Identity:
    """Whom a mail is believed to come from, or why nobody."""

    address: str  # lower case; "" when refused
    refusal: str | None = None  # why the mail's sender cannot be believed
    signature: str = ""  # the b= value of the DKIM signature that vouched (require_dkim)
    date: datetime | None = None  # its Date, as signed when a signature was required
    via_list: bool = False  # the person came from X-Original-From or Reply-To of a list's mail

    @classmethod
    def refused(cls, reason: str) -> "Identity":
        return cls("", reason)


def identify(raw: bytes, mail: MailRecord, config: Config, store: Store,
             dnsfunc: dkim.DnsLookup | None = None) -> Identity:
    """Whom `mail` (stored as `raw`) comes from, as far as it can be believed; never raises.

    With require_dkim, the mail must also be the one stored (its signed Message-ID) and answer
    the thread it was filed in, as its signed In-Reply-To and References name it.
    """
    identity, signed = believed_sender(raw, config, dnsfunc)
    if identity.refusal is not None or signed is None:
        return identity
    if message_id_of(signed.value("message-id")) != mail.message_id or mail.synthetic_id:
        return Identity.refused("its signed Message-ID is not the one it was stored under")
    signed_thread = (*message_ids_in(signed.value("in-reply-to"))[:1], *reversed(message_ids_in(signed.value("references"))))
    named = store.series_by_thread(signed_thread)
    if named is None or named.id != mail.series_id:
        return Identity.refused("the thread its signed In-Reply-To and References name is not the one it was filed in")
    return identity


def believed_sender(raw: bytes, config: Config,
                    dnsfunc: dkim.DnsLookup | None = None) -> tuple[Identity, dkim.DkimResult | None]:
    """Whom a mail comes from as far as its headers (and, with require_dkim, its signature)
    vouch, and the passing DKIM result; for a mail not filed yet as much as for a reply."""
    head = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
    from_values = _values(head, "from")
    senders = addresses_of(from_values[0]) if len(from_values) == 1 else []
    if len(senders) != 1:
        return Identity.refused("its From header does not name exactly one sender"), None
    sender = senders[0].addr
    covering, person, via_list = dkim.COMMAND_HEADERS, sender, False
    if config.mail.list_address and sender == (address_of(config.mail.list_address) or senders[0]).addr:
        header = next((name for name in ORIGINAL_SENDER_HEADERS if _values(head, name)), None)
        original = addresses_of(_values(head, header)[0]) if header and len(_values(head, header)) == 1 else []
        if len(original) != 1:
            return Identity.refused("it is from the list's own address and does not name one original sender"
                                    " (X-Original-From or Reply-To)"), None
        covering, person, via_list = (*covering, header), original[0].addr, True
    for name in covering:
        if len(_values(head, name)) > 1:
            return Identity.refused(f"it has {len(_values(head, name))} {dkim.shown_header(name)} headers"), None
    if not config.commands.require_dkim:
        return Identity(person, date=date_of(_first(head, "date")), via_list=via_list), None

    result = dkim.verify(raw, sender, dnsfunc=dnsfunc, covering=covering)
    domain = sender.rpartition("@")[2]
    if not result.ok:
        whose = f"the list's domain {domain}" if via_list else domain
        return Identity.refused(f"no DKIM signature of this mail verifies for {whose} ({result.reason})"), None
    differs = _differs_from_signed(raw, result, covering, head)
    if differs:
        return Identity.refused(differs), None
    unaddressed = _not_sent_to_patchbot(result, config)
    if unaddressed:
        return Identity.refused(unaddressed), None
    return Identity(person, signature=result.signature, date=date_of(result.value("date")), via_list=via_list), result


# What files a patch mail into a series: who sent it, which mail it is, its subject (title,
# version, number), and the thread it answers where it names one.
FILING_HEADERS = ("from", "message-id", "subject")
THREAD_HEADERS = ("in-reply-to", "references")


def signed_by_sender(raw: bytes, dnsfunc: dkim.DnsLookup | None = None) -> bool:
    """Whether a DKIM signature of the From's own domain vouches for the mail's sender and for
    every header that decides where it is filed (series.py's sticky signing); never raises."""
    head = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
    from_values = _values(head, "from")
    senders = addresses_of(from_values[0]) if len(from_values) == 1 else []
    if len(senders) != 1:
        return False
    covering = (*FILING_HEADERS, *(name for name in THREAD_HEADERS if _values(head, name)))
    if any(len(_values(head, name)) > 1 for name in covering):
        return False
    result = dkim.verify(raw, senders[0].addr, dnsfunc=dnsfunc, covering=covering)
    return result.ok and _differs_from_signed(raw, result, covering, head) is None


def freshness_refusal(identity: Identity, mail: MailRecord, config: Config, store: Store) -> str | None:
    """Why a signed command mail may not act now: too old, dated ahead, or its signature acted already.

    A genuine signed command can be re-sent by anyone on the list; it acts once, within
    `[commands] max_age_days` of its signed Date. Without require_dkim there is nothing signed
    to hold a replay to (each Message-ID acts once all the same).
    """
    if not config.commands.require_dkim:
        return None
    if identity.date is None:
        return "its signed Date cannot be read"
    limit = timedelta(days=config.commands.max_age_days)
    if mail.received_at - identity.date > limit:
        return (f"it was written on {identity.date:%Y-%m-%d}, more than {config.commands.max_age_days} days before"
                " patchbot received it; a signed command counts only that long ([commands] max_age_days)")
    if identity.date - mail.received_at > FUTURE_ALLOWANCE:
        return f"its Date ({identity.date:%Y-%m-%d %H:%M} UTC) is later than when patchbot received it"
    with store.transaction():
        first = store.claim_command_signature(identity.signature, mail.id)
    if first != mail.id:
        return "the same signed mail acted already (a copy of it was sent again)"
    return None


def _differs_from_signed(raw: bytes, result: dkim.DkimResult, covering: tuple[str, ...], head: Message) -> str | None:
    """Which header patchbot read otherwise than the signature covers it, or None."""
    try:
        parsed = parse_mail(raw)
    except MailRejected as rejection:
        return f"it cannot be read ({rejection})"
    checks: dict[str, Callable[[str | None], object]] = {
        "from": lambda value: (address_of(value) or _NOBODY).addr,
        "message-id": message_id_of,
        "in-reply-to": lambda value: next(iter(message_ids_in(value)), None),
        "references": message_ids_in,
        "subject": lambda value: text_of(value or ""),
        "date": date_of,
        "x-original-from": lambda value: (address_of(value) or _NOBODY).addr,
        "reply-to": lambda value: (address_of(value) or _NOBODY).addr,
    }
    read = {
        "from": checks["from"](_first(head, "from")),
        "message-id": None if parsed.synthetic_id else parsed.message_id,
        "in-reply-to": parsed.in_reply_to,
        "references": parsed.references,
        "subject": parsed.subject_text,
        "date": parsed.date,
        "x-original-from": checks["x-original-from"](_first(head, "x-original-from")),
        "reply-to": checks["reply-to"](_first(head, "reply-to")),
    }
    for name in covering:
        if checks[name](result.value(name)) != read[name]:
            return f"what patchbot read of its {dkim.shown_header(name)} header is not what the signature covers"
    return None


def _not_sent_to_patchbot(result: dkim.DkimResult, config: Config) -> str | None:
    """Why the signed To and Cc show the mail was not sent to the list (or patchbot), or None.

    A maintainer's private answer to a patch's author ("patchbot: apply master v1 once you fix
    this") is signed too; its recipient could send it on to the list within the age limit.
    """
    ours = [address.addr for address in (address_of(config.mail.list_address), address_of(config.mail.sender)) if address]
    if not config.mail.list_address:
        return None
    recipients = {address.addr for name in ("to", "cc") for value in result.values(name) for address in addresses_of(value)}
    if recipients.isdisjoint(ours):
        return (f"it was not sent to {config.mail.list_address}: its signed To and Cc do not name it"
                " (a private mail sent on to the list does not count)")
    return None


class _Nobody:
    addr = None


_NOBODY = _Nobody()


def _values(head: Message, name: str | None) -> list[str]:
    """Every instance of a header, raw, top first."""
    if name is None:
        return []
    return [value if isinstance(value, str) else str(value) for key, value in head.raw_items() if key.lower() == name]


def _first(head: Message, name: str) -> str | None:
    values = _values(head, name)
    return values[0] if values else None
