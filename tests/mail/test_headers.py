"""Header decoding: clean text, addresses, Message-IDs and dates out of whatever arrives."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from patchbot.mail.headers import (
    MAX_MSGID_LENGTH,
    MAX_THREAD_IDS,
    Address,
    address_of,
    addresses_of,
    date_of,
    message_id_of,
    message_ids_in,
    text_of,
)

UTC = timezone.utc


@pytest.mark.parametrize(
    "raw, text",
    [
        ("=?utf-8?b?UmFmYcWCIE1pxYJlY2tp?=", "Rafał Miłecki"),  # RFC 2047 b
        ("=?utf-8?q?Rafa=C5=82_Mi=C5=82ecki?=", "Rafał Miłecki"),  # RFC 2047 q, _ is a space
        ("=?UTF-8?Q?Rafa=C5=82?=", "Rafał"),  # upper-case charset and encoding
        ("=?utf-8*pl?q?Rafa=C5=82?=", "Rafał"),  # RFC 2231 language suffix
        # Adjacent encoded words: the white space between them is not text.
        ("=?iso-8859-1?q?J=F6rg?= =?iso-8859-1?q?_M?= plain", "Jörg M plain"),
        ("=?utf-8?q?a?=\n =?utf-8?q?b?=", "ab"),
        ("=?UTF-8?Q?a?= b =?UTF-8?Q?c?=", "a b c"),  # plain text between words stays
        ("x =?utf-8?q?a?=", "x a"),
        # A character split across adjacent words of one charset: joined as bytes first.
        ("=?utf-8?q?Rafa=C5?= =?utf-8?q?=82_x?=", "Rafał x"),
        ("=?UTF-8?B?UmFmYcU=?=\n =?UTF-8?B?giBNacWCZWNraQ==?=", "Rafał Miłecki"),
        ("=?utf-8?q?a=C5?= =?iso-8859-1?q?=F6?=", "aÅö"),  # charsets differ: decoded apart
        # Charsets that make lone surrogates are no use: the next in the fallback list.
        ("=?utf-7?q?+2AA-?= hello", "+2AA- hello"),
        ("=?punycode?q?ib9b?= hello", "ib9b hello"),
        ("=?unicode-escape?q?\\ud800?= hello", "\\ud800 hello"),
        # An unknown charset: utf-8 first, then windows-1252.
        ("=?x-unknown?q?J=C3=B6rg?=", "Jörg"),
        ("=?x-unknown?q?J=F6rg?=", "Jörg"),
        ("=?utf-\x00?q?a?=", "a"),  # a charset name with a NUL
        # Invalid utf-8 in a word that says utf-8: windows-1252.
        ("=?utf-8?q?J=F6rg?=", "Jörg"),
        # Raw 8-bit bytes, as the email package hands them over (surrogate-escaped).
        ("Rafa\udcc5\udc82 Mi\udcc5\udc82ecki", "Rafał Miłecki"),
        ("J\udcf6rg", "Jörg"),
        ("\udc81\udc8d", "\x81\x8d"),  # neither utf-8 nor windows-1252: latin-1
        # NULs are stripped, also inside encoded words.
        ("a\x00b", "ab"),
        ("=?utf-8?q?a=00b?=", "ab"),
        ("=?utf-8?b?YQBi?=", "ab"),
        # Folding and runs of white space collapse to one space.
        ("a\n b\n\tc", "a b c"),
        ("  x  ", "x"),
        ("a\r\n b", "a b"),
        # Broken words: missing padding is supplied, a word that is not base64 at all is empty.
        ("=?utf-8?b?UmFm?=", "Raf"),
        ("=?utf-8?b?UmFmYQ?=", "Rafa"),
        ("=?utf-8?b?!!!?=", ""),
        ("=?utf-8?x?abc?=", "=?utf-8?x?abc?="),  # not an encoding: left as it is
        ("", ""),
    ],
)
def test_text_of(raw, text):
    assert text_of(raw) == text


@pytest.mark.parametrize(
    "raw, name, addr",
    [
        ("Jane Doe <Jane@Example.ORG>", "Jane Doe", "jane@example.org"),
        ("jane@example.org", "", "jane@example.org"),
        ("<jane@example.org>", "", "jane@example.org"),
        ('"Doe, Jane" <jane@example.org>', "Doe, Jane", "jane@example.org"),
        ("=?utf-8?q?J=C3=B6rg?= <j@x.de>", "Jörg", "j@x.de"),
        ("J\udcf6rg <j@x.de>", "Jörg", "j@x.de"),
        ("Jane\x00 <jane@example.org>", "Jane", "jane@example.org"),
        ("Jane <jane@example.org> (comment)", "Jane", "jane@example.org"),
        ("Jane\n <jane@example.org>", "Jane", "jane@example.org"),
        ("Jane <jane@example.org>, Bob <bob@example.org>", "Jane", "jane@example.org"),
        ("a@b", "", "a@b"),
    ],
)
def test_address_of(raw, name, addr):
    assert address_of(raw) == Address(name, addr)


@pytest.mark.parametrize(
    "raw",
    [
        None, "", "Jane", "Jane <not an address>", "<.com>", "jane at example.org", "undisclosed-recipients:;",
        "x" * 250 + "@example.org",  # longer than an address can be
        "Jane <ja ne@exa<mple.org>",
    ],
)
def test_address_of_unusable(raw):
    assert address_of(raw) is None


def test_addresses_of_skips_the_unusable():
    assert addresses_of("Jane <jane@example.org>, Bob <BOB@example.org>, bad, <c@d.org>") == [
        Address("Jane", "jane@example.org"), Address("Bob", "bob@example.org"), Address("", "c@d.org"),
    ]
    assert addresses_of(None) == []


def test_address_str():
    assert str(Address("Jane Doe", "jane@example.org")) == "Jane Doe <jane@example.org>"
    assert str(Address("", "jane@example.org")) == "jane@example.org"


@pytest.mark.parametrize(
    "raw, msgid",
    [
        ("<abc@def>", "<abc@def>"),
        ("  <abc@def>  ", "<abc@def>"),
        ("abc@def", "<abc@def>"),  # no brackets: the token is the id
        ("x <abc@d> y", "<abc@d>"),  # garbage around: the bracketed id
        ("<a@b> <c@d>", "<a@b>"),
        ("<ab\x00c@d>", "<abc@d>"),
        ("\x00<1m>", "<1m>"),
        ("<abc@def>\n", "<abc@def>"),
        ("<" + "a" * (MAX_MSGID_LENGTH - 2) + ">", "<" + "a" * (MAX_MSGID_LENGTH - 2) + ">"),
    ],
)
def test_message_id_of(raw, msgid):
    assert message_id_of(raw) == msgid


@pytest.mark.parametrize(
    "raw",
    [
        None, "", "   ", "garbage with spaces", "<a b>", "<>", "a<b", "abc@def>", "<é@d>", "<a\x1b@b>",
        "<" + "a" * (MAX_MSGID_LENGTH - 1) + ">",  # one character too long
        "<" + "a" * 5000 + "@b>",
    ],
)
def test_message_id_of_unusable(raw):
    assert message_id_of(raw) is None


@pytest.mark.parametrize(
    "raw, ids",
    [
        ("<a@b> <c@d>", ("<a@b>", "<c@d>")),
        ("<a@b>\n <c@d>\n\t<a@b>", ("<a@b>", "<c@d>")),  # folded, duplicate dropped
        ("<a@b><c@d>", ("<a@b>", "<c@d>")),
        ("junk <a@b> junk", ("<a@b>",)),
        ("<a b@c> <d@e>", ("<d@e>",)),
        ("<é@x> <y@z>", ("<y@z>",)),
        ("<a\x00@b>", ("<a@b>",)),
        ("a@b", ()),  # In-Reply-To without brackets is not trusted
        ("", ()),
        (None, ()),
    ],
)
def test_message_ids_in(raw, ids):
    assert message_ids_in(raw) == ids


@pytest.mark.parametrize(
    "raw, moment",
    [
        ("Mon, 01 Mar 2021 12:00:00 +0000", datetime(2021, 3, 1, 12, 0, tzinfo=UTC)),
        ("Mon, 01 Mar 2021 12:00:00 +0100", datetime(2021, 3, 1, 11, 0, tzinfo=UTC)),
        ("Mon, 01 Mar 2021 12:00:00 -0000", datetime(2021, 3, 1, 12, 0, tzinfo=UTC)),
        ("Mon, 01 Mar 2021 12:00:00", datetime(2021, 3, 1, 12, 0, tzinfo=UTC)),  # no zone: UTC
        ("Mon, 01 Mar 2021 12:00:00 EST", datetime(2021, 3, 1, 17, 0, tzinfo=UTC)),
        ("1 Mar 2021 12:00 GMT", datetime(2021, 3, 1, 12, 0, tzinfo=UTC)),
        ("Mon,\n 01 Mar 2021 12:00:00 +0000", datetime(2021, 3, 1, 12, 0, tzinfo=UTC)),
        ("Mon, 01 Mar 21 12:00:00 +0000", datetime(2021, 3, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_date_of(raw, moment):
    parsed = date_of(raw)
    assert parsed == moment
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "raw",
    [
        None, "", "garbage", "Mon, 32 Mar 2021 12:00:00 +0000", "Mon, 01 Mar 2021 25:00:00 +0000",
        "Mon, 01 Mar 99999 12:00:00 +0000",  # year out of range
        "Fri, 31 Dec 9999 23:59:59 -1400",  # in range, but not once moved to UTC
        "Mon, 01 Mar 2021 12:00:00 +9999",
    ],
)
def test_date_of_unusable(raw):
    assert date_of(raw) is None


def test_a_long_references_keeps_its_root_and_nearest_ancestors():
    # 120,000 ids once stalled the scheduler: only the root and the last 99 are kept, in order.
    ids = [f"<ref.{number}@example.org>" for number in range(120_000)]
    kept = message_ids_in(" ".join(ids))
    assert len(kept) == MAX_THREAD_IDS == 100
    assert kept == (ids[0], *ids[-99:])


def test_a_long_references_of_repeats_keeps_each_id_once():
    kept = message_ids_in("<a@b> " * 50_000 + "<c@d> <a@b>")
    assert kept == ("<a@b>", "<c@d>")


def test_a_short_references_is_kept_whole():
    ids = [f"<ref.{number}@example.org>" for number in range(MAX_THREAD_IDS)]
    assert message_ids_in("\n ".join(ids)) == tuple(ids)


def test_references_read_by_compat32_as_a_header_object():
    # Raw 8-bit text makes the compat32 parser hand back a Header object, not a str.
    from email.parser import BytesParser
    from email.policy import compat32

    head = BytesParser(policy=compat32).parsebytes(b"References: <a@b> <caf\xc3\xa9@x> <c@d>\r\n\r\n", headersonly=True)
    assert not isinstance(head.get("References"), str)
    assert message_ids_in(head.get("References")) == ("<a@b>", "<c@d>")
