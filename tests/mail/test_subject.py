"""The subject grammar of patch mail, as a table (in the manner of b4's test_lore_subject_prefixes)."""

from __future__ import annotations

import pytest

from patchbot.mail.subject import Subject, parse_subject

# subject, counter, total, version, rfc, resend, reply_marker, tags, title
SUBJECTS = [
    ("[PATCH v2 0/3] x", 0, 3, 2, False, False, False, (), "x"),
    ("Re: [PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("[PATCHv3 1/8] x", 1, 8, 3, False, False, False, (), "x"),
    ("[PATCH1/8] x", 1, 8, 1, False, False, False, (), "x"),
    ("[Buildroot] [PATCH 01/11] x", 1, 11, 1, False, False, False, ("Buildroot",), "x"),
    ("[PATCH 1 of 3] x", 1, 3, 1, False, False, False, (), "x"),
    ("[PATCH 10 of 12] x", 10, 12, 1, False, False, False, (), "x"),
    ("[net,v2,1/2] x", 1, 2, 2, False, False, False, ("net",), "x"),
    ("[PATCH RFC RESEND 2/2] x", 2, 2, 1, True, True, False, (), "x"),
    ("[RFC PATCH v2 1/3] x", 1, 3, 2, True, False, False, (), "x"),
    ("[rfc] x", None, None, 1, True, False, False, (), "x"),
    ("[PATCH] x (v3)", None, None, 3, False, False, False, (), "x (v3)"),
    ("[PATCH v2 1/3] x (v4)", 1, 3, 2, False, False, False, (), "x (v4)"),
    ("SV: [PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("mm: fix leak", None, None, 1, False, False, False, (), "mm: fix leak"),
    ("Fix: a thing", None, None, 1, False, False, False, (), "Fix: a thing"),
    ("[PATCH [v2] 1/3] x", 1, 3, 2, False, False, False, (), "x"),
    ("[aur-dev] Re: [PATCH] x", None, None, 1, False, False, True, ("aur-dev",), "x"),
    ("[PATCH aurweb-v6] x", None, None, 1, False, False, False, ("aurweb-v6",), "x"),
    ("[PATCH 3/2] x", 3, 2, 1, False, False, False, (), "x"),  # beyond the total: kept (issue 14)
    ("[PATCH 0/0] x", None, None, 1, False, False, False, (), "x"),
    ("[PATCH v0] x", None, None, 1, False, False, False, (), "x"),
    ("Fwd: [PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("AW: [PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("Re[2]: [PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("Re:[PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("RE: x", None, None, 1, False, False, True, (), "x"),
    ("Fw: x", None, None, 1, False, False, True, (), "x"),
    ("odp: x", None, None, 1, False, False, True, (), "x"),
    ("net: [PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("[PATCH V4 2/3] x", 2, 3, 4, False, False, False, (), "x"),
    ("[PATCH 1/3]: x", 1, 3, 1, False, False, False, (), "x"),
    ("[PATCH]x", None, None, 1, False, False, False, (), "x"),
    ("  [PATCH   v2   1/3]   a   b  ", 1, 3, 2, False, False, False, (), "a b"),
    ("[GIT PULL] soc: updates for v5.5", None, None, 1, False, False, False, ("GIT", "PULL"), "soc: updates for v5.5"),
    ("[PATCH 1/3 2/3] x", 1, 3, 1, False, False, False, ("2/3",), "x"),
    # Every reply marker before the prefixes is peeled; after them, "re:" is a title (Python's re).
    ("Re: Re: [PATCH v2 1/2] x", 1, 2, 2, False, False, True, (), "x"),
    ("AW: Re: [PATCH] x", None, None, 1, False, False, True, (), "x"),
    ("Re: Fwd: [PATCH 3/4] x", 3, 4, 1, False, False, True, (), "x"),
    ("Aw: Re: x", None, None, 1, False, False, True, (), "x"),
    ("[PATCH 4/5] re: drop dead code", 4, 5, 1, False, False, False, (), "re: drop dead code"),
    ("[PATCH] Re: x", None, None, 1, False, False, False, (), "Re: x"),
    # Absurd numbers are noise, not positions (they once overflowed SQLite).
    ("[PATCH 99999999999999999999/99999999999999999999] x", None, None, 1, False, False, False, (), "x"),
    ("[PATCH 1/99999999999999999999] x", None, None, 1, False, False, False, (), "x"),
    ("[PATCH v99999999999999999999] x", None, None, 1, False, False, False, (), "x"),
    ("[PATCH] x (v99999999999999999999)", None, None, 1, False, False, False, (), "x (v99999999999999999999)"),
    ("[PATCH 9999/9999] x", 9999, 9999, 1, False, False, False, (), "x"),
    ("[PATCH 0001/0002] x", 1, 2, 1, False, False, False, (), "x"),
    ("[PATCH v9999] x", None, None, 9999, False, False, False, (), "x"),
    ("[PATCH v10000] x", None, None, 1, False, False, False, (), "x"),
    ("[PATCH", None, None, 1, False, False, False, (), ""),
    ("", None, None, 1, False, False, False, (), ""),
]


@pytest.mark.parametrize(
    "text, counter, total, version, rfc, resend, reply, tags, title", SUBJECTS, ids=[row[0] or "<empty>" for row in SUBJECTS]
)
def test_subject_prefixes(text, counter, total, version, rfc, resend, reply, tags, title):
    subject = parse_subject(text)
    assert (subject.counter, subject.total, subject.version) == (counter, total, version)
    assert (subject.rfc, subject.resend, subject.reply_marker) == (rfc, resend, reply)
    assert subject.tags == tags
    assert subject.title == title


@pytest.mark.parametrize(
    "text, marker",
    [
        ("[PATCH] x", True),
        ("[PATCH1/8] x", True),
        ("[net,v2,1/2] x", True),  # a counter is a patch marker of its own
        ("[GIT PULL] x", False),
        ("[rfc] x", False),
        ("mm: fix leak", False),
        ("Re: [PATCH] x", True),
    ],
)
def test_patch_marker(text, marker):
    assert parse_subject(text).has_patch_marker is marker


def test_the_whole_subject_record():
    assert parse_subject("[aur-dev] [PATCH RFC v3 2/5] rpc: search by maintainer") == Subject(
        title="rpc: search by maintainer", counter=2, total=5, version=3, rfc=True, resend=False,
        has_patch_marker=True, reply_marker=False, tags=("aur-dev",),
    )


@pytest.mark.parametrize(
    "first, second",
    [
        ("[PATCH v2 1/3] Port the RPC search", "[PATCH v3 1/3] port the  RPC search."),
        ("[PATCH] Port the RPC search (v2)", "[PATCH v3] Port the RPC search"),
        ("[PATCH] x: y", "[PATCH RESEND] X: Y"),
    ],
)
def test_normalised_titles_match_across_versions(first, second):
    assert parse_subject(first).normalised_title == parse_subject(second).normalised_title


def test_normalised_title_exact():
    assert parse_subject("[PATCH v2] Port  the RPC Search (v2).").normalised_title == "port the rpc search"
