"""A mail's readable text: its text and diff parts, decoded with a fallback, LF-only."""

from __future__ import annotations

from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import compat32

import pytest

from patchbot.mail.body import decode_with_fallback, text_of_body


def message(data: bytes):
    return BytesParser(policy=compat32).parsebytes(data)


@pytest.mark.parametrize(
    "payload, charset, text",
    [
        (b"caf\xc3\xa9", None, "café"),
        (b"caf\xc3\xa9", "utf-8", "café"),
        (b"caf\xe9", None, "café"),  # not utf-8: windows-1252
        (b"caf\xe9", "utf-8", "café"),  # declared wrongly: the fallback list
        (b"\x93hi\x94", None, "\u201chi\u201d"),  # windows-1252 quotes
        (b"caf\xe9", "iso-8859-2", "café"),
        (b"\xe8a", "iso-8859-2", "\u010da"),  # the declared charset wins (windows-1252 would say "èa")
        (b"caf\xe9", "none", "café"),  # an unknown charset: the fallback list
        (b"caf\xe9", "x-unknown", "café"),
        (b"x", "utf\x00-8", "x"),  # a NUL in the name: ValueError, not LookupError
        (b"\x81\x8d\x8f", None, "\x81\x8d\x8f"),  # undefined in windows-1252: iso-8859-1
        (b"\xff\xfe", "ascii", "ÿþ"),
        ("é".encode("utf-16"), "utf-16", "é"),
        (b"", None, ""),
        # Codecs that turn bytes into lone surrogates are skipped: SQLite and stdout refuse them.
        (b"+2AA-", "utf-7", "+2AA-"),
        (b"ib9b", "punycode", "ib9b"),
        (b"\\ud800", "unicode-escape", "\\ud800"),
        (b"+AOk-", "utf-7", "é"),  # utf-7 itself is fine where it makes no surrogate
    ],
)
def test_decode_with_fallback(payload, charset, text):
    assert decode_with_fallback(payload, charset) == text


def test_crlf_becomes_lf():
    mail = message(b"From: a@b.org\r\nSubject: x\r\n\r\nline one\r\nline two\r\n\r\nlast\r")
    assert text_of_body(mail) == "line one\nline two\n\nlast\n"


def test_a_declared_charset_that_python_does_not_know():
    mail = message(b'From: a@b.org\nContent-Type: text/plain; charset="none"\n\nGr\xfc\xdfe\n')
    assert text_of_body(mail) == "Grüße\n"


def test_quoted_printable_and_base64_are_decoded():
    qp = message(b"From: a@b.org\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nGr=C3=BC=C3=9Fe=\n und so\n")
    assert text_of_body(qp) == "Grüße und so\n"
    b64 = message(b"From: a@b.org\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nR3LDvMOfZQo=\n")
    assert text_of_body(b64) == "Grüße\n"


def test_broken_base64_does_not_raise():
    mail = message(b"From: a@b.org\nContent-Transfer-Encoding: base64\n\n!!!not base64 at all\n")
    assert isinstance(text_of_body(mail), str)


def _multipart(*parts: tuple[str, str, bytes]) -> bytes:
    out = [b'From: a@b.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="BOUND"\n\npreamble\n']
    for content_type, extra, payload in parts:
        out.append(b"--BOUND\nContent-Type: " + content_type.encode() + b"\n" + extra.encode() + b"\n" + payload + b"\n")
    out.append(b"--BOUND--\n")
    return b"".join(out)


DIFF = b"diff --git a/f b/f\nindex 1..2 100644\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n"


def test_html_alternatives_are_ignored():
    mail = message(_multipart(
        ("text/plain; charset=utf-8", "", b"plain words"),
        ("text/html; charset=utf-8", "", b"<p>html words</p>"),
    ))
    assert text_of_body(mail) == "plain words"


def test_patch_attachments_are_text():
    mail = message(_multipart(
        ("text/plain", "", b"See the attachment."),
        ("text/x-patch; name=fix.patch", "Content-Disposition: attachment\n", DIFF),
        ("text/x-diff", "", DIFF.replace(b"a/f", b"a/g").replace(b"b/f", b"b/g")),
    ))
    assert text_of_body(mail) == "See the attachment.\n" + DIFF.decode() + "\n" + DIFF.decode().replace("a/f", "a/g").replace("b/f", "b/g")


def test_octet_stream_counts_only_when_it_holds_a_diff():
    mail = message(_multipart(
        ("text/plain", "", b"Two attachments."),
        ("application/octet-stream; name=fix.patch", "", DIFF),
        ("application/octet-stream; name=blob.bin", "", b"\x00\x01\x02 binary"),
    ))
    assert text_of_body(mail) == "Two attachments.\n" + DIFF.decode()


def test_images_and_other_types_are_skipped():
    mail = message(_multipart(
        ("text/plain", "", b"words"),
        ("image/png", "Content-Transfer-Encoding: base64\n", b"iVBORw0KGgo="),
        ("application/pdf", "", b"%PDF-1.4"),
    ))
    assert text_of_body(mail) == "words"


def test_an_email_message_built_mail():
    built = EmailMessage()
    built["From"] = "a@b.org"
    built.set_content("Grüße\r\naus Köln\n", charset="utf-8", cte="base64")
    assert text_of_body(message(built.as_bytes())) == "Grüße\naus Köln\n"
