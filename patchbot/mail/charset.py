"""Decode mail bytes: the declared charset when Python knows it, else utf-8, windows-1252, latin-1."""

from __future__ import annotations

FALLBACK_CHARSETS = ("utf-8", "windows-1252", "iso-8859-1")


def decode_with_fallback(payload: bytes, charset: str | None) -> str:
    """Never raises: latin-1, last in the list, decodes any byte."""
    for candidate in (charset, *FALLBACK_CHARSETS):
        if not candidate:
            continue
        try:
            text = payload.decode(candidate)
            # Codecs such as utf-7 or unicode-escape can make lone surrogates, which no
            # later stage (SQLite, stdout) can encode: such a charset is no use.
            text.encode("utf-8")
            return text
        except (UnicodeDecodeError, UnicodeEncodeError, LookupError, ValueError):
            continue
    raise AssertionError("latin-1 decodes every byte")
