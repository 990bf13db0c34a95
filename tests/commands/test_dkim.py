"""patchbot.commands.dkim against real signatures: RSA keys made here, mails signed by dkimpy.

There is no DNS server here; the key is served through dkimpy's dnsfunc hook: each test's
`keys` maps b"<selector>._domainkey.<domain>." to the TXT record, and verify() asks it.
Keys come from `openssl genrsa` (the cryptography package is not a dependency).
"""

from __future__ import annotations


import dkim
import pytest

from commands_support import make_key
from patchbot.commands.dkim import DkimResult, verify

SIGNED = [b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references"]
SENDER = "maint@example.org"


@pytest.fixture(scope="module")
def key_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes]]:
    folder = tmp_path_factory.mktemp("keys")
    pairs = {name: make_key(folder, name) for name in ("author", "other")}
    pairs["small"] = make_key(folder, "small", bits=512)
    return pairs


class Keys:
    """The 'DNS' of one test: TXT records by name, and the names asked for."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}
        self.asked: list[bytes] = []

    def publish(self, selector: bytes, domain: bytes, record: bytes) -> None:
        self.records[selector + b"._domainkey." + domain + b"."] = record

    def __call__(self, name: bytes) -> bytes | None:
        self.asked.append(name)
        return self.records.get(name)


@pytest.fixture
def keys(key_pairs) -> Keys:
    keys = Keys()
    keys.publish(b"s1", b"example.org", key_pairs["author"][1])
    keys.publish(b"s2", b"other.example", key_pairs["other"][1])
    keys.publish(b"s3", b"org", key_pairs["other"][1])
    keys.publish(b"s4", b"mail.example.org", key_pairs["other"][1])
    keys.publish(b"tiny", b"example.org", key_pairs["small"][1])
    return keys


def mail(sender: str = SENDER, body: str = "patchbot: retest\n", extra: str = "", eol: bytes = b"\n") -> bytes:
    text = (
        f"From: Maint Ainer <{sender}>\n"
        "To: list@lists.example.org\n"
        "Subject: Re: [PATCH v2 1/3] fix the frobnicator\n"
        "Date: Fri, 28 Nov 2025 10:00:00 +0000\n"
        "Message-ID: <reply-1@example.org>\n"
        "In-Reply-To: <patch-1@example.org>\n"
        f"{extra}"
        "\n"
        f"{body}"
    )
    return text.encode().replace(b"\n", eol)


def sign(message: bytes, key: bytes, domain: bytes = b"example.org", selector: bytes = b"s1", **options) -> bytes:
    """The message with a DKIM-Signature prepended, as the signer's MTA sends it."""
    eol = b"\r\n" if b"\r\n" in message else b"\n"
    header = dkim.sign(message, selector, domain, key, include_headers=SIGNED, linesep=eol, **options)
    return header + message


def test_good_signature_with_lf_line_ends(key_pairs, keys):
    signed = sign(mail(), key_pairs["author"][0])
    assert b"\r" not in signed
    assert verify(signed, SENDER, dnsfunc=keys) == DkimResult(True, "signature of example.org verifies")
    assert keys.asked == [b"s1._domainkey.example.org."]


def test_good_signature_with_crlf_line_ends(key_pairs, keys):
    signed = sign(mail(eol=b"\r\n"), key_pairs["author"][0])
    assert signed.count(b"\r\n") == signed.count(b"\n")
    assert verify(signed, SENDER, dnsfunc=keys) == DkimResult(True, "signature of example.org verifies")


def test_signed_with_crlf_and_stored_with_lf_still_verifies(key_pairs, keys):
    """An MTA signs the CRLF wire form; a Maildir or mbox keeps it with LF: dkimpy reads both alike."""
    signed = sign(mail(eol=b"\r\n"), key_pairs["author"][0])
    assert verify(signed.replace(b"\r\n", b"\n"), SENDER, dnsfunc=keys).ok
    unsigned_lf = sign(mail(), key_pairs["author"][0])
    assert verify(unsigned_lf.replace(b"\n", b"\r\n"), SENDER, dnsfunc=keys).ok


@pytest.mark.parametrize("canonicalize", [(b"simple", b"simple"), (b"relaxed", b"relaxed"), (b"relaxed", b"simple")])
def test_every_canonicalization_verifies(key_pairs, keys, canonicalize):
    signed = sign(mail(), key_pairs["author"][0], canonicalize=canonicalize)
    assert verify(signed, SENDER, dnsfunc=keys).ok


def test_relaxed_canonicalization_tolerates_what_it_allows(key_pairs, keys):
    signed = sign(mail(), key_pairs["author"][0], canonicalize=(b"relaxed", b"relaxed"))
    rewrapped = signed.replace(b"Subject: Re:", b"Subject:   Re:").replace(b"retest\n", b"retest  \n\n\n")
    assert verify(rewrapped, SENDER, dnsfunc=keys).ok


def test_sender_given_with_display_name_or_in_capitals(key_pairs, keys):
    signed = sign(mail(), key_pairs["author"][0])
    assert verify(signed, "Maint Ainer <Maint@Example.ORG>", dnsfunc=keys).ok


def test_forged_from_breaks_the_signature(key_pairs, keys):
    """example.org signed a mail of alice@example.org; someone changed From to the maintainer."""
    signed = sign(mail(sender="alice@example.org"), key_pairs["author"][0])
    forged = signed.replace(b"<alice@example.org>", b"<maint@example.org>")
    assert verify(forged, SENDER, dnsfunc=keys) == DkimResult(False, "signature does not verify")


def test_body_changed_after_signing(key_pairs, keys):
    signed = sign(mail(body="patchbot: status\n"), key_pairs["author"][0])
    changed = signed.replace(b"patchbot: status", b"patchbot: apply")
    result = verify(changed, SENDER, dnsfunc=keys)
    assert not result.ok
    assert result.reason == "signature does not verify: the body changed after signing"


def test_header_changed_after_signing(key_pairs, keys):
    signed = sign(mail(), key_pairs["author"][0])
    changed = signed.replace(b"Subject: Re: [PATCH v2", b"Subject: Re: [PATCH v3")
    assert verify(changed, SENDER, dnsfunc=keys) == DkimResult(False, "signature does not verify")


def test_valid_signature_of_another_domain(key_pairs, keys):
    signed = sign(mail(), key_pairs["other"][0], domain=b"other.example", selector=b"s2")
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: keys(name))  # valid as such
    keys.asked.clear()
    result = verify(signed, SENDER, dnsfunc=keys)
    assert result == DkimResult(False, "signed by other.example, not the sender's domain example.org")
    assert keys.asked == []  # a signature that cannot count is not looked up


def test_no_signature():
    assert verify(mail(), SENDER, dnsfunc=lambda name: pytest.fail("no lookup expected")) == DkimResult(
        False, "no DKIM signature"
    )


def test_unknown_selector(key_pairs, keys):
    signed = sign(mail(), key_pairs["author"][0], selector=b"gone")
    result = verify(signed, SENDER, dnsfunc=keys)
    assert result == DkimResult(False, "cannot fetch the key: no key record at gone._domainkey.example.org")


def test_dns_failure_is_a_reason_not_an_exception(key_pairs):
    def failing(name: bytes) -> bytes | None:
        raise dkim.DnsTimeoutError("timed out")

    result = verify(sign(mail(), key_pairs["author"][0]), SENDER, dnsfunc=failing)
    assert not result.ok
    assert result.reason.startswith("cannot fetch the key: s1._domainkey.example.org: DnsTimeoutError")


def test_broken_key_record(key_pairs, keys):
    keys.publish(b"s1", b"example.org", b"v=DKIM1; k=rsa; p=bm90IGEga2V5")
    result = verify(sign(mail(), key_pairs["author"][0]), SENDER, dnsfunc=keys)
    assert not result.ok
    assert result.reason.startswith("unusable key at s1._domainkey.example.org: ")


def test_key_under_1024_bits_is_refused(key_pairs, keys):
    result = verify(sign(mail(), key_pairs["small"][0], selector=b"tiny"), SENDER, dnsfunc=keys)
    assert not result.ok
    assert "public key too small" in result.reason


def test_key_of_another_key_pair(key_pairs, keys):
    """The record under the selector is not the key that signed: the signature does not verify."""
    keys.publish(b"s1", b"example.org", key_pairs["other"][1])
    assert verify(sign(mail(), key_pairs["author"][0]), SENDER, dnsfunc=keys) == DkimResult(
        False, "signature does not verify"
    )


@pytest.mark.parametrize(
    "header, reason",
    [
        (b"DKIM-Signature: this is not a tag list\n", "malformed DKIM-Signature: "),
        (b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org\n", "malformed DKIM-Signature: ValidationError: missing b="),
        (b"DKIM-Signature: v=1; v=1\n", "malformed DKIM-Signature: "),
        (b"DKIM-Signature: \n", "malformed DKIM-Signature: ValidationError: missing v="),
    ],
)
def test_garbage_signature_header(header, reason):
    result = verify(header + mail(), SENDER, dnsfunc=lambda name: None)
    assert not result.ok
    assert result.reason.startswith(reason)


def test_garbage_beside_a_good_signature(key_pairs, keys):
    signed = sign(mail(), key_pairs["author"][0])
    assert verify(b"DKIM-Signature: garbage\n" + signed, SENDER, dnsfunc=keys).ok


def test_two_signatures_one_good_of_the_right_domain(key_pairs, keys):
    """A list's signature on top (valid, other domain) and the author's below it."""
    own = sign(mail(), key_pairs["author"][0])
    both = sign(own, key_pairs["other"][0], domain=b"other.example", selector=b"s2")
    assert both.index(b"d=other.example") < both.index(b"d=example.org")
    assert verify(both, SENDER, dnsfunc=keys) == DkimResult(True, "signature of example.org verifies")


def test_two_signatures_each_with_its_reason(key_pairs, keys):
    own = sign(mail(body="patchbot: status\n"), key_pairs["author"][0])
    both = sign(own, key_pairs["other"][0], domain=b"other.example", selector=b"s2")
    changed = both.replace(b"patchbot: status", b"patchbot: apply")
    result = verify(changed, SENDER, dnsfunc=keys)
    assert result == DkimResult(
        False,
        "signed by other.example, not the sender's domain example.org; "
        "signature does not verify: the body changed after signing",
    )


def test_subdomain_sender_is_vouched_for_by_the_parent_domain(key_pairs, keys):
    """Relaxed alignment, one way: example.org's DNS controls lists.example.org too."""
    sender = "maint@lists.example.org"
    signed = sign(mail(sender=sender), key_pairs["author"][0])
    assert verify(signed, sender, dnsfunc=keys) == DkimResult(True, "signature of example.org verifies")


def test_subdomain_signer_does_not_vouch_for_the_parent_domain(key_pairs, keys):
    signed = sign(mail(), key_pairs["other"][0], domain=b"mail.example.org", selector=b"s4")
    assert verify(signed, SENDER, dnsfunc=keys) == DkimResult(
        False, "signed by mail.example.org, not the sender's domain example.org"
    )


def test_top_level_domain_signer_does_not_count(key_pairs, keys):
    signed = sign(mail(), key_pairs["other"][0], domain=b"org", selector=b"s3")
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: keys(name))
    assert verify(signed, SENDER, dnsfunc=keys) == DkimResult(False, "signed by org, not the sender's domain example.org")


def test_same_domain_user_cannot_claim_another_sender(key_pairs, keys):
    """example.org signs every user's mail: mallory's valid signature is not maint's."""
    signed = sign(mail(sender="mallory@example.org"), key_pairs["author"][0])
    assert verify(signed, "mallory@example.org", dnsfunc=keys).ok
    result = verify(signed, SENDER, dnsfunc=keys)
    assert not result.ok
    assert result.reason.startswith("From is mallory@example.org, not the sender maint@example.org")


def test_list_rewrote_from_for_dmarc_is_refused(key_pairs, keys):
    """Jane's mail with From rewritten by the list: only the list's signature verifies."""
    rewritten = mail(
        sender="list@lists.example.org",
        extra="X-Original-From: Maint Ainer <maint@example.org>\nReply-To: Maint Ainer <maint@example.org>\n",
    ).replace(b"From: Maint Ainer <", b"From: Maint Ainer via list <")
    keys.publish(b"s2", b"lists.example.org", key_pairs["other"][1])
    signed = sign(rewritten, key_pairs["other"][0], domain=b"lists.example.org", selector=b"s2")
    result = verify(signed, SENDER, dnsfunc=keys)
    assert not result.ok
    assert result.reason.startswith("From is list@lists.example.org, not the sender maint@example.org")


def test_a_second_from_header_is_refused(key_pairs, keys):
    signed = sign(mail(sender="mallory@example.org"), key_pairs["author"][0])
    doubled = b"From: maint@example.org\n" + signed
    assert verify(doubled, SENDER, dnsfunc=keys) == DkimResult(False, "2 From headers")


def test_signature_not_covering_from_is_refused(key_pairs, keys):
    signed = sign(mail(), key_pairs["author"][0])
    # dkimpy refuses to sign without From; rewrite h= of a real signature, as a forger could.
    header_end = signed.index(b"From: Maint")
    header = signed[:header_end].replace(b"h=from : ", b"h=")
    assert b"h=to" in header
    result = verify(header + signed[header_end:], SENDER, dnsfunc=keys)
    assert result == DkimResult(False, "signature of example.org does not cover From")


def test_length_limited_signature_with_text_appended(key_pairs, keys):
    signed = sign(mail(body="patchbot: status\n"), key_pairs["author"][0], length=True)
    assert verify(signed, SENDER, dnsfunc=keys).ok  # l= covers the whole body as sent
    appended = signed + b"patchbot: apply\n"
    assert dkim.verify(appended, dnsfunc=lambda name, timeout=5: keys(name))  # dkimpy alone: fine
    result = verify(appended, SENDER, dnsfunc=keys)
    assert not result.ok
    assert "covers only" in result.reason


def test_default_dnsfunc_signature_is_dkimpys(key_pairs, keys):
    """A dkimpy-style lookup (name, timeout=5) works as dnsfunc too: verify() passes the name only."""
    signed = sign(mail(), key_pairs["author"][0])
    assert verify(signed, SENDER, dnsfunc=lambda name, timeout=5: keys(name)).ok


@pytest.mark.parametrize(
    "raw",
    [b"", b"\n\n", b"no colon here\n\nbody", b"\xff\xfe: \x00\n\n", b"DKIM-Signature: d=\xff; s=\xff\n\n"],
)
def test_odd_mails_never_raise(raw):
    result = verify(raw, SENDER, dnsfunc=lambda name: None)
    assert isinstance(result, DkimResult)
    assert not result.ok


def test_unusable_sender(key_pairs, keys):
    result = verify(sign(mail(), key_pairs["author"][0]), "nobody", dnsfunc=keys)
    assert not result.ok


# -- every header patchbot reads is signed, and no instance beyond what h= names -------------------


def test_a_signature_covering_the_headers_hands_back_their_signed_values_and_b(key_pairs, keys):
    signed = sign(mail(extra="References: <cover@example.org> <patch-1@example.org>\n"), key_pairs["author"][0])
    result = verify(signed, SENDER, dnsfunc=keys)
    assert result.ok
    assert result.value("message-id").strip() == "<reply-1@example.org>"
    assert result.value("references").strip() == "<cover@example.org> <patch-1@example.org>"
    assert result.signature and result.signature in b"".join(signed.split()).decode()


@pytest.mark.parametrize("added", [b"Message-ID: <replay@evil.example>\n", b"In-Reply-To: <other@evil.example>\n",
                                   b"References: <other@evil.example>\n", b"Subject: Re: [PATCH] another\n"])
def test_a_signed_header_added_on_top_after_signing_is_refused(key_pairs, keys, added):
    """dkimpy alone verifies these (it hashes the bottom-most instance); patchbot reads the top one."""
    signed = sign(mail(extra="References: <patch-1@example.org>\n"), key_pairs["author"][0])
    replayed = added + signed
    assert dkim.verify(replayed, dnsfunc=lambda name, timeout=5: keys(name))
    result = verify(replayed, SENDER, dnsfunc=keys)
    assert not result.ok
    assert "headers and the signature of example.org covers 1: a header was added after signing" in result.reason


def test_a_header_signed_absent_and_added_later_breaks_the_signature(key_pairs, keys):
    """h= naming References while the mail had none signs its absence (RFC 6376 section 8.15)."""
    signed = sign(mail(), key_pairs["author"][0])
    assert verify(signed, SENDER, dnsfunc=keys).ok
    assert verify(b"References: <other@evil.example>\n" + signed, SENDER, dnsfunc=keys) == DkimResult(
        False, "signature does not verify")


@pytest.mark.parametrize("left_out, shown", [(b"in-reply-to", "In-Reply-To"), (b"references", "References"),
                                             (b"message-id", "Message-ID"), (b"date", "Date")])
def test_a_signature_leaving_out_a_header_patchbot_reads_is_refused(key_pairs, keys, left_out, shown):
    header = dkim.sign(mail(), b"s1", b"example.org", key_pairs["author"][0],
                       include_headers=[name for name in SIGNED if name != left_out])
    result = verify(header + mail(), SENDER, dnsfunc=keys)
    assert result == DkimResult(False, f"signature of example.org does not cover {shown} (patchbot acts only on what is signed)")


def test_two_instances_of_a_read_header_are_refused_even_when_both_are_signed(key_pairs, keys):
    doubled = mail(extra="In-Reply-To: <other@example.org>\n")
    header = dkim.sign(doubled, b"s1", b"example.org", key_pairs["author"][0], include_headers=SIGNED + [b"in-reply-to"])
    result = verify(header + doubled, SENDER, dnsfunc=keys)
    assert result == DkimResult(False, "the mail has 2 In-Reply-To headers (one is allowed)")


def test_an_extra_header_to_cover_can_be_asked_for(key_pairs, keys):
    signed = sign(mail(extra="X-Original-From: Maint <maint@example.org>\n"), key_pairs["author"][0])
    result = verify(signed, SENDER, dnsfunc=keys, covering=("from", "x-original-from"))
    assert result.reason.startswith("signature of example.org does not cover X-Original-From")


def test_a_key_is_asked_of_dns_once_for_many_mails(key_pairs, keys):
    """Filing an archive checks every signed patch mail: one provider's key is fetched once."""
    for number in range(5):
        signed = sign(mail(extra=f"X-Serial: {number}\n"), key_pairs["author"][0])
        assert verify(signed, SENDER, dnsfunc=keys).ok
    assert keys.asked == [b"s1._domainkey.example.org."]


def test_a_dns_failure_is_kept_too_so_a_dead_resolver_costs_one_timeout(key_pairs):
    asked = []

    def timing_out(name: bytes) -> bytes | None:
        asked.append(name)
        raise dkim.DnsTimeoutError("no answer in 5 s")

    signed = sign(mail(), key_pairs["author"][0])
    results = [verify(signed, SENDER, dnsfunc=timing_out) for _ in range(3)]
    assert [result.ok for result in results] == [False] * 3
    assert "DnsTimeoutError" in results[0].reason and len(asked) == 1
