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
  mallory@gmail.com that names maint@gmail.com in X-Original-From would otherwise count as
  maint's. Hence mails whose From a mailing list rewrote for DMARC ("Jane via list"), where
  patchbot takes the author from X-Original-From or Reply-To, are refused under require_dkim:
  the list's own signature is not the author's, and the author's signature, which covers
  the original From, does not survive the rewrite.
* The signature must cover From (h=), as RFC 6376 requires, and with l= it must cover the
  whole body: text appended after the signed length (where a command could hide) is refused.
* Keys are fetched through `dnsfunc(name)` (name as dkimpy builds it, with a trailing dot:
  b"sel._domainkey.example.org."), returning the TXT record's bytes or None when there is
  none; by default dkimpy's own DNS lookup (dnspython). A missing, unreadable or too small
  (< 1024 bits) key refuses the signature.
* Nothing raises: dkimpy's exceptions (malformed headers, key or DNS failures), and those of
  `dnsfunc`, become ok=False with the reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import dkim
from dkim.canonicalization import CanonicalizationPolicy

from patchbot.mail.headers import address_of, addresses_of

DnsLookup = Callable[[bytes], bytes | None]

_BYTES_REPR = re.compile(r"\bb'([^']*)'")
# dkimpy logs what it then reports as False or raises; the reasons here carry the same facts.
_QUIET = logging.Logger("patchbot.commands.dkim.dkimpy", level=logging.CRITICAL + 1)


@dataclass(frozen=True)
class DkimResult:
    ok: bool
    reason: str  # "signature of example.org verifies", or why not


def verify(raw: bytes, sender: str, dnsfunc: DnsLookup | None = None) -> DkimResult:
    """Whether one of the mail's DKIM signatures verifies for the sender's domain; never raises."""
    try:
        return _verify(raw, sender, dnsfunc or _dns_lookup)
    except Exception as error:  # noqa: BLE001 - the promise is ok=False, never an exception
        return DkimResult(False, f"cannot check DKIM: {_describe(error)}")


def _verify(raw: bytes, sender: str, lookup: DnsLookup) -> DkimResult:
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
        result = _check_one(raw, index, sender_domain, lookup)
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


def _check_one(raw: bytes, index: int, sender_domain: str, lookup: DnsLookup) -> DkimResult:
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
    if b"l" in fields:
        refusal = _length_refusal(signer, fields, domain)
        if refusal:
            return DkimResult(False, refusal)

    name = fields[b"s"] + b"._domainkey." + fields[b"d"] + b"."  # as dkimpy builds it
    shown_name = name.rstrip(b".").decode("ascii", "replace")
    try:
        record = lookup(name)
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
    return DkimResult(True, f"signature of {domain} verifies")


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


def _dns_lookup(name: bytes) -> bytes | None:
    """dkimpy's own TXT lookup (dnspython); raises dkim.DnsTimeoutError on timeouts."""
    from dkim.dnsplug import get_txt

    return get_txt(name, timeout=5)


def _describe(error: Exception) -> str:
    """The exception's type and message, with dkimpy's b'...' reprs shown as plain text."""
    text = _BYTES_REPR.sub(r"\1", str(error)).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
