"""Check that a command mail's DKIM signature verifies for its sender's domain.

With `require_dkim = true` a command counts only when `verify(raw, sender)` says ok. The rules:

* The mail is checked as received. dkimpy's own parser reads both CRLF and bare-LF line
  endings and hashes both as CRLF (DKIM's canonical form), so nothing is normalised here: a
  mail signed with CRLF and stored with LF (a Unix mbox, Maildir) verifies unchanged.
* Every DKIM-Signature header is considered, not only the topmost (dkimpy's `dkim.verify`
  checks only the first); the mail passes when one of them passes all of the checks below.
  When none does, the reason lists why each one failed.
* Alignment: a signature counts for the sender when its d= equals the sender's domain, or
  when the sender's domain is a subdomain of d= (DMARC's relaxed alignment, one direction
  only): whoever controls example.org's DNS controls lists.example.org too, so example.org's
  signature vouches for both. The other direction is refused: d=mail.example.org does not
  vouch for example.org, since a subdomain is often delegated to a mail provider. A d= of a
  single label (a top-level domain) never counts. A signature whose d= does not align is not
  verified at all (no DNS query to a domain that could not count anyway).
* The From header must hold the sender's address, and only it (one From header, one
  address). A verifying signature proves that d= sent the mail with the From it covers,
  nothing more: a big provider signs every user's mail with the same d=, so a mail from
  mallory@gmail.com that names maint@gmail.com in X-Original-From does not count as maint's.
  A mail whose From the list rewrote for DMARC ("Jane via list <list@...>") is checked as the
  list's own (the sender is the list address) with X-Original-From or Reply-To among the
  covered headers: commands/identity.py decides whom that list signature vouches for.
* The signature must cover From (h=), as RFC 6376 requires, and every other header patchbot
  reads from a command mail (`covering`: Message-ID, In-Reply-To, References, Subject, Date by
  default); naming a header in h= that the mail lacks signs its absence. With l= it must cover
  the whole body: text appended after the signed length (where a command could hide) is refused.
* No header may be present more often than h= names it (RFC 6376 section 8.15), and each
  header of `covering` at most once. dkimpy hashes the bottom-most instances h= names, while
  a mail reader takes the top one: a genuine signed mail re-sent with a Message-ID,
  In-Reply-To or References prepended verified, and patchbot acted in the thread the
  prepended headers named. With this rule every instance present is one the signature covers.
* A passing result carries the values of the `covering` headers exactly as the signature
  covered them (dkimpy's view of the mail), and the signature's b= value: the caller checks
  that what its own parser read is the same, and that a signature acts only once.
* Keys are fetched through `dnsfunc(name)` (name as dkimpy builds it, with a trailing dot:
  b"sel._domainkey.example.org."), returning the TXT record's bytes or None when there is
  none; by default dkimpy's own DNS lookup (dnspython). A missing, unreadable or too small
  (< 1024 bits) key refuses the signature. Answers (and failures) are kept KEY_TTL_S seconds
  per lookup function and name: filing an archive of thousands of signed mails from a few
  providers asks DNS a few times, and a resolver that times out costs one timeout, not one
  per mail (every patch mail is checked, see identity.signed_by_sender).
* Nothing raises: dkimpy's exceptions (malformed headers, key or DNS failures), and those of
  `dnsfunc`, become ok=False with the reason.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dkim
from dkim.canonicalization import CanonicalizationPolicy

from patchbot.mail.headers import address_of, addresses_of

DnsLookup = Callable[[bytes], bytes | None]

KEY_TTL_S = 300.0
_MAX_KEYS = 4096
_KEYS: dict[tuple[DnsLookup, bytes], tuple[float, bytes | None | Exception]] = {}

_BYTES_REPR = re.compile(r"\bb'([^']*)'")
# dkimpy logs what it then reports as False or raises; the reasons here carry the same facts.
_QUIET = logging.Logger("patchbot.commands.dkim.dkimpy", level=logging.CRITICAL + 1)


# Every header patchbot reads from a command mail: who sent it, which mail it is, which thread
# it answers, and when it was written (the age limit reads Date).
COMMAND_HEADERS = ("from", "message-id", "in-reply-to", "references", "subject", "date")


@dataclass(frozen=True)
class DkimResult:
    ok: bool
    reason: str  # "signature of example.org verifies", or why not
    # On success: every header the signature covers that the mail has, (lower-case name, value as
    # signed), and the b= value of the signature that passed (white space removed).
    signed: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    signature: str = field(default="", compare=False)

    def value(self, name: str) -> str | None:
        """A covered header's value as signed; None when the mail has none (its absence is signed)."""
        return next((value for key, value in self.signed if key == name), None)

    def values(self, name: str) -> list[str]:
        """Every signed instance of a header (To and Cc may come more than once)."""
        return [value for key, value in self.signed if key == name]


def verify(raw: bytes, sender: str, dnsfunc: DnsLookup | None = None,
           covering: tuple[str, ...] = COMMAND_HEADERS) -> DkimResult:
    """Whether one of the mail's DKIM signatures verifies for the sender's domain and covers
    every header of `covering`; never raises."""
    try:
        return _verify(raw, sender, dnsfunc or _dns_lookup, tuple(name.lower() for name in covering))
    except Exception as error:  # noqa: BLE001 - the promise is ok=False, never an exception
        return DkimResult(False, f"cannot check DKIM: {_describe(error)}")


def _verify(raw: bytes, sender: str, lookup: DnsLookup, covering: tuple[str, ...]) -> DkimResult:
    address = address_of(sender)
    if address is None:
        return DkimResult(False, f"no usable sender address in {sender!r}")
    sender_domain = _ascii_domain(address.addr.rpartition("@")[2])
    try:
        parsed = dkim.DKIM(raw, logger=_QUIET)
    except Exception as error:  # noqa: BLE001 - dkimpy's parser raises on odd header lines
        return DkimResult(False, f"malformed mail: {_describe(error)}")
    count = sum(1 for name, _ in parsed.headers if name.lower() == b"dkim-signature")
    if count == 0:
        return DkimResult(False, "no DKIM signature")
    refusal = _from_refusal(parsed.headers, address.addr)
    if refusal:
        return DkimResult(False, refusal)
    reasons: list[str] = []
    for index in range(count):
        result = _check_one(raw, index, sender_domain, lookup, covering)
        if result.ok:
            return result
        if result.reason not in reasons:
            reasons.append(result.reason)
    return DkimResult(False, "; ".join(reasons))


def _from_refusal(headers: list, sender_addr: str) -> str | None:
    """Why the From header does not name the sender alone, or None when it does."""
    values = [value for name, value in headers if name.lower() == b"from"]
    if not values:
        return "no From header"
    if len(values) > 1:
        return f"{len(values)} From headers"
    found = addresses_of(values[0].decode("ascii", "surrogateescape"))
    if len(found) != 1:
        return "From does not hold exactly one address"
    if found[0].addr != sender_addr:
        return f"From is {found[0].addr}, not the sender {sender_addr} (only a signature of the sender's own From counts)"
    return None


def _check_one(raw: bytes, index: int, sender_domain: str, lookup: DnsLookup, covering: tuple[str, ...]) -> DkimResult:
    """Check the index-th DKIM-Signature header (0 is the topmost)."""
    signer = dkim.DKIM(raw, logger=_QUIET)
    try:
        prepared = signer.verify_headerprep(index)
    except Exception as error:  # noqa: BLE001 - not a tag list, missing tags, expired (x=), ...
        return DkimResult(False, f"malformed DKIM-Signature: {_describe(error)}")
    if not prepared:
        return DkimResult(False, "no DKIM signature")
    fields, include_headers, _ = prepared
    domain = _signing_domain(fields[b"d"])
    if domain is None or not _aligned(domain, sender_domain):
        shown = domain or fields[b"d"].decode("ascii", "replace")
        return DkimResult(False, f"signed by {shown}, not the sender's domain {sender_domain}")
    if b"from" not in include_headers:
        return DkimResult(False, f"signature of {domain} does not cover From")
    refusal = _coverage_refusal(signer.headers, include_headers, covering, domain)
    if refusal:
        return DkimResult(False, refusal)
    if b"l" in fields:
        refusal = _length_refusal(signer, fields, domain)
        if refusal:
            return DkimResult(False, refusal)

    name = fields[b"s"] + b"._domainkey." + fields[b"d"] + b"."  # as dkimpy builds it
    shown_name = name.rstrip(b".").decode("ascii", "replace")
    try:
        record = _kept_lookup(lookup, name)
    except Exception as error:  # noqa: BLE001 - DNS errors of any resolver
        return DkimResult(False, f"cannot fetch the key: {shown_name}: {_describe(error)}")
    if not record:
        return DkimResult(False, f"cannot fetch the key: no key record at {shown_name}")
    if isinstance(record, str):
        record = record.encode("ascii", "replace")
    try:
        dkim.evaluate_pk(name, record)  # dkimpy turns a bad key into a bare False: say why here
    except Exception as error:  # noqa: BLE001 - KeyFormatError, binascii.Error, ...
        return DkimResult(False, f"unusable key at {shown_name}: {_describe(error)}")

    def served(asked: bytes, timeout: float = 5) -> bytes | None:
        return record if asked == name else None

    try:
        good = signer.verify(idx=index, dnsfunc=served)
    except dkim.ValidationError as error:
        if str(error).startswith("body hash mismatch"):
            return DkimResult(False, "signature does not verify: the body changed after signing")
        return DkimResult(False, f"signature does not verify: {_describe(error)}")
    except dkim.KeyFormatError as error:  # e.g. a key shorter than 1024 bits
        return DkimResult(False, f"unusable key at {shown_name}: {_describe(error)}")
    except Exception as error:  # noqa: BLE001
        return DkimResult(False, f"signature does not verify: {_describe(error)}")
    if not good:
        return DkimResult(False, "signature does not verify")
    # Every instance of a header h= names is signed (no more instances than h= names them).
    signed = tuple((name.decode("ascii", "replace").lower(), value.decode("ascii", "surrogateescape"))
                   for name, value in signer.headers if name.lower() in include_headers)
    signature = re.sub(rb"\s+", b"", fields[b"b"]).decode("ascii", "replace")
    return DkimResult(True, f"signature of {domain} verifies", signed, signature)


def _coverage_refusal(headers: list, include_headers: list[bytes], covering: tuple[str, ...], domain: str) -> str | None:
    """Why the signature leaves a header patchbot reads unsigned, or None when it covers them all."""
    missing = [name for name in covering if name.encode() not in include_headers]
    if missing:
        return (f"signature of {domain} does not cover {', '.join(shown_header(name) for name in missing)}"
                " (patchbot acts only on what is signed)")
    present: dict[bytes, int] = {}
    for name, _ in headers:
        present[name.lower()] = present.get(name.lower(), 0) + 1
    for name in dict.fromkeys(include_headers):
        # More instances than h= names: the unsigned extra one is what a reader may take.
        if present.get(name, 0) > include_headers.count(name):
            return (f"the mail has {present[name]} {shown_header(name.decode('ascii', 'replace'))} headers and the signature"
                    f" of {domain} covers {include_headers.count(name)}: a header was added after signing")
    for name in covering:
        if present.get(name.encode(), 0) > 1:
            return f"the mail has {present[name.encode()]} {shown_header(name)} headers (one is allowed)"
    return None


def shown_header(name: str) -> str:
    """A header name as people write it: message-id -> Message-ID, in-reply-to -> In-Reply-To."""
    return "-".join("ID" if part == "id" else part.capitalize() for part in name.split("-"))


def _length_refusal(signer: dkim.DKIM, fields: dict, domain: str) -> str | None:
    """Why an l= signature leaves part of the body unsigned, or None when it covers it all."""
    try:
        policy = CanonicalizationPolicy.from_c_value(fields.get(b"c", b"simple/simple"))
        body_length = len(policy.canonicalize_body(signer.body))
        signed_length = int(fields[b"l"])
    except Exception as error:  # noqa: BLE001
        return f"malformed DKIM-Signature: {_describe(error)}"
    if signed_length < body_length:
        return f"signature of {domain} covers only {signed_length} of the body's {body_length} bytes (l=)"
    return None


def _aligned(signing_domain: str, sender_domain: str) -> bool:
    """d= equals the sender's domain, or is a parent of it (and not a bare top-level domain)."""
    if signing_domain == sender_domain:
        return True
    return "." in signing_domain and sender_domain.endswith("." + signing_domain)


def _signing_domain(value: bytes) -> str | None:
    try:
        return value.decode("ascii").strip().rstrip(".").lower() or None
    except UnicodeDecodeError:
        return None


def _ascii_domain(domain: str) -> str:
    """The sender's domain as d= spells it: lower case, IDNA (punycode) for non-ASCII."""
    domain = domain.strip().rstrip(".").lower()
    try:
        domain.encode("ascii")
        return domain
    except UnicodeEncodeError:
        pass
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _kept_lookup(lookup: DnsLookup, name: bytes) -> bytes | None:
    """`lookup(name)`, answered from what it gave (or raised) within KEY_TTL_S seconds."""
    now = time.monotonic()
    kept = _KEYS.get((lookup, name))
    if kept is None or now - kept[0] >= KEY_TTL_S:
        try:
            found: bytes | None | Exception = lookup(name)
        except Exception as error:  # noqa: BLE001 - kept, then raised again to the caller
            found = error
        if len(_KEYS) >= _MAX_KEYS:
            _KEYS.clear()
        kept = _KEYS[(lookup, name)] = (now, found)
    if isinstance(kept[1], Exception):
        raise kept[1]
    return kept[1]


def _dns_lookup(name: bytes) -> bytes | None:
    """dkimpy's own TXT lookup (dnspython); raises dkim.DnsTimeoutError on timeouts."""
    from dkim.dnsplug import get_txt

    return get_txt(name, timeout=5)


def _describe(error: Exception) -> str:
    """The exception's type and message, with dkimpy's b'...' reprs shown as plain text."""
    text = _BYTES_REPR.sub(r"\1", str(error)).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
