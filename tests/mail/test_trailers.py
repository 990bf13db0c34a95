"""Trailers: sign-offs, reviews and the hints that steer testing, found anywhere in the prose."""

from __future__ import annotations

import pytest

from patchbot.mail.trailers import Trailer, parse_trailers

PROSE = """\
rpc: search by maintainer

Signed-off-by: Jane Doe <jane@example.org>
Reviewed-by: Bob <bob@example.org>
acked-by: Carl <carl@example.org>
Tested-by:   Dee <dee@example.org>  \n\
base-commit: 0123456789abcdef0123456789abcdef01234567
Based-on: <series.1@example.org>
Supersedes: <old.1@example.org>
change-id: 20240101-topic-abc
Depends-on: <dep.1@example.org>
> Reviewed-by: Quoted <q@example.org>
 Reviewed-by: Indented <i@example.org>
Not-A-Trailer: x
Reviewed-by:
Fixes: 1234567 ("rpc: add search")
-- \n\
Acked-by: Below the signature <below@example.org>
"""


def test_known_trailers_anywhere_in_the_prose():
    assert parse_trailers(PROSE) == (
        Trailer("Signed-off-by", "Jane Doe <jane@example.org>"),
        Trailer("Reviewed-by", "Bob <bob@example.org>"),
        Trailer("Acked-by", "Carl <carl@example.org>"),  # canonical spelling
        Trailer("Tested-by", "Dee <dee@example.org>"),  # white space trimmed
        Trailer("base-commit", "0123456789abcdef0123456789abcdef01234567"),
        Trailer("Based-on", "<series.1@example.org>"),
        Trailer("Supersedes", "<old.1@example.org>"),
        Trailer("change-id", "20240101-topic-abc"),
        Trailer("Depends-on", "<dep.1@example.org>"),
        Trailer("Fixes", '1234567 ("rpc: add search")'),
    )


@pytest.mark.parametrize(
    "prose",
    [
        "> Reviewed-by: Quoted <q@example.org>\n",
        " Reviewed-by: Indented <i@example.org>\n",
        "Reviewed-by:\n",
        "Reviewed-by:   \n",
        "Reviewed-by : Bob <bob@example.org>\n",
        "X-Reviewed-by: Bob <bob@example.org>\n",
        "Thanks!\n-- \nReviewed-by: Bob <bob@example.org>\n",
        "",
    ],
)
def test_not_trailers(prose):
    assert parse_trailers(prose) == ()


def test_a_trailer_between_paragraphs_counts():
    assert parse_trailers("First.\n\nReviewed-by: Bob <bob@example.org>\n\nMore text.\n") == (
        Trailer("Reviewed-by", "Bob <bob@example.org>"),
    )


def test_only_an_exact_signature_separator_stops_the_search():
    # "--" without its space, and "---" (git's diffstat separator), are not signatures.
    assert parse_trailers("a\n--\nAcked-by: A <a@x.org>\n---\nTested-by: T <t@x.org>\n") == (
        Trailer("Acked-by", "A <a@x.org>"),
        Trailer("Tested-by", "T <t@x.org>"),
    )
