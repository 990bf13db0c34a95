"""parse_mail as a whole: rejections with reasons, DMARC-rewritten senders, ids and threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from patchbot.mail import (
    MAX_PARSED_BYTES,
    Kind,
    MailRejected,
    RejectReason,
    message_id_for,
    parse_mail,
    synthetic_message_id,
)
from patchbot.mail.headers import Address

PATCH = b"""\
From: Jane Doe <jane@example.org>
To: aur-dev@lists.archlinux.org
Subject: [PATCH v2 1/2] rpc: return an error for unknown types
Date: Mon, 01 Mar 2021 12:00:00 +0100
Message-Id: <p.1@example.org>
In-Reply-To: <cover.1@example.org>
References: <v1.0@example.org>
 <cover.1@example.org>
List-Id: AUR development <aur-dev.lists.archlinux.org>

The RPC answered 200 with an empty result.

Signed-off-by: Jane Doe <jane@example.org>
Based-on: <base.series@example.org>
---
 web/html/rpc.php | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/web/html/rpc.php b/web/html/rpc.php
index 1111111..2222222 100644
--- a/web/html/rpc.php
+++ b/web/html/rpc.php
@@ -1,3 +1,3 @@
 <?php
-$type = $_GET['type'];
+$type = $_GET['type'] ?? 'error';
 echo json_encode([]);
-- 
2.39.5
"""


def test_a_patch_mail():
    mail = parse_mail(PATCH)
    assert (mail.message_id, mail.synthetic_id) == ("<p.1@example.org>", False)
    assert mail.subject_text == "[PATCH v2 1/2] rpc: return an error for unknown types"
    assert (mail.subject.counter, mail.subject.total, mail.subject.version) == (1, 2, 2)
    assert (mail.sender, mail.via_list) == (Address("Jane Doe", "jane@example.org"), False)
    assert mail.date == datetime(2021, 3, 1, 11, 0, tzinfo=timezone.utc)
    assert mail.in_reply_to == "<cover.1@example.org>"
    assert mail.references == ("<v1.0@example.org>", "<cover.1@example.org>")
    assert mail.thread_ids == ("<cover.1@example.org>", "<v1.0@example.org>")
    assert mail.list_id == "aur-dev.lists.archlinux.org"
    assert (mail.kind, mail.kind_rule) == (Kind.PATCH, "has-diff")
    assert mail.message == (
        "The RPC answered 200 with an empty result.\n\n"
        "Signed-off-by: Jane Doe <jane@example.org>\nBased-on: <base.series@example.org>"
    )
    assert mail.has_diff and mail.diffstat
    assert [change.path for change in mail.files] == ["web/html/rpc.php"]
    assert mail.trailer_values("based-on") == ("<base.series@example.org>",)
    assert mail.trailer_values("Signed-off-by") == ("Jane Doe <jane@example.org>",)
    assert mail.pull_url is None
    assert mail.auto_submitted is None


def test_crlf_delivery_parses_like_lf():
    """SMTP delivers CRLF: the diff must not keep the CRs (unidiff would see renames)."""
    lf, crlf = parse_mail(PATCH), parse_mail(PATCH.replace(b"\n", b"\r\n"))
    assert crlf.diff == lf.diff and "\r" not in crlf.diff
    assert crlf.files == lf.files
    assert crlf.files[0].path == "web/html/rpc.php" and not crlf.files[0].renamed
    assert crlf.message == lf.message


def test_a_mail_without_message_id_gets_a_stable_synthetic_one():
    data = PATCH.replace(b"Message-Id: <p.1@example.org>\n", b"")
    mail = parse_mail(data)
    assert mail.synthetic_id is True
    assert mail.message_id == synthetic_message_id(data) == synthetic_message_id(data.replace(b"\n", b"\r\n"))
    assert mail.message_id.endswith("@synthetic.patchbot.invalid>")
    assert message_id_for(data) == (mail.message_id, True)
    assert message_id_for(PATCH) == ("<p.1@example.org>", False)


def test_an_unusable_message_id_is_replaced():
    data = PATCH.replace(b"<p.1@example.org>", b"<not an id>")
    assert parse_mail(data).synthetic_id is True


def test_auto_submitted_is_kept():
    mail = parse_mail(PATCH.replace(b"To:", b"Auto-Submitted: auto-replied\nTo:"))
    assert mail.auto_submitted == "auto-replied"


def test_a_list_id_without_brackets():
    assert parse_mail(PATCH.replace(b"AUR development <aur-dev.lists.archlinux.org>", b"aur-dev")).list_id == "aur-dev"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", RejectReason.EMPTY),
        (b"  \r\n\n\t", RejectReason.EMPTY),
        (b"just some text\nmore text\n", RejectReason.NO_HEADERS),
        (b"\x00\x00\x00", RejectReason.NO_HEADERS),
        (b"Subject: x\n\nbody\n", RejectReason.NO_SENDER),
        (b"From: nobody\nSubject: x\n\nbody\n", RejectReason.NO_SENDER),
        (b"From: Jane <jane at example.org>\n\nbody\n", RejectReason.NO_SENDER),
        (b"From: a@b.org\n\n" + b"x" * MAX_PARSED_BYTES, RejectReason.TOO_LARGE),
    ],
)
def test_rejections_say_why(data, reason):
    with pytest.raises(MailRejected) as raised:
        parse_mail(data)
    assert raised.value.reason is reason
    assert str(raised.value).startswith(reason.value)


def test_a_rejection_names_the_bad_sender():
    with pytest.raises(MailRejected, match=r"^no usable sender address in From \(nobody\)$"):
        parse_mail(b"From: nobody\nSubject: x\n\nbody\n")


def test_a_minimal_mail_is_other():
    mail = parse_mail(b"From: a@b.org\n")
    assert (mail.kind, mail.kind_rule, mail.subject_text, mail.date) == (Kind.OTHER, "no-rule", "", None)


# -- DMARC: the list rewrote From ------------------------------------------------------------

LIST_MAIL = """\
From: Jane Doe via aur-dev <aur-dev@lists.archlinux.org>
To: aur-dev@lists.archlinux.org
List-Post: <mailto:aur-dev@lists.archlinux.org>
Subject: [PATCH] rpc: fix
Message-Id: <dmarc.1@example.org>
Date: Mon, 01 Mar 2021 12:00:00 +0000
{extra}
Body.
"""


def list_mail(extra: str) -> bytes:
    return LIST_MAIL.format(extra=extra + "\n" if extra else "").encode("utf-8")


@pytest.mark.parametrize(
    "extra",
    [
        "X-Original-From: Jane Doe <jane@example.org>",
        "Reply-To: Jane Doe <jane@example.org>",
        "Cc: Bob <bob@example.org>, Jane Doe <jane@example.org>",
        'Cc: "Jane Doe" <JANE@Example.org>',
        "Reply-To: aur-dev@lists.archlinux.org\nCc: Jane Doe <jane@example.org>",
        # X-Original-From wins over a Reply-To naming someone else.
        "Reply-To: Jane Doe <other@example.org>\nX-Original-From: Jane Doe <jane@example.org>",
    ],
    ids=["x-original-from", "reply-to", "cc", "cc-quoted-upper-case", "cc-after-list-reply-to", "x-original-from-first"],
)
def test_dmarc_rewritten_from_gives_the_real_author(extra):
    mail = parse_mail(list_mail(extra))
    assert mail.sender == Address("Jane Doe", "jane@example.org")
    assert mail.via_list is True


def test_dmarc_x_original_from_is_decoded():
    mail = parse_mail(list_mail("X-Original-From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>"))
    assert (mail.sender, mail.via_list) == (Address("Jörg Müller", "joerg@example.org"), True)


@pytest.mark.parametrize(
    "extra",
    ["", "Reply-To: Someone Else <se@example.org>", "Cc: Bob <bob@example.org>"],
    ids=["nothing", "reply-to-other-name", "cc-other-name"],
)
def test_dmarc_without_the_author_keeps_the_list_address_and_says_so(extra):
    mail = parse_mail(list_mail(extra))
    assert mail.sender == Address("Jane Doe", "aur-dev@lists.archlinux.org")
    assert mail.via_list is True


def test_a_via_name_from_another_address_than_the_list_is_not_rewritten():
    data = list_mail("Reply-To: Jane Doe <jane@example.org>").replace(
        b"List-Post: <mailto:aur-dev@", b"List-Post: <mailto:other@"
    )
    mail = parse_mail(data)
    assert mail.sender == Address("Jane Doe via aur-dev", "aur-dev@lists.archlinux.org")
    assert mail.via_list is False


def test_an_ordinary_sender_is_not_via_the_list():
    mail = parse_mail(list_mail("Reply-To: Jane Doe <jane@example.org>").replace(
        b"From: Jane Doe via aur-dev <aur-dev@lists.archlinux.org>", b"From: Bob <bob@example.org>"
    ))
    assert (mail.sender, mail.via_list) == (Address("Bob", "bob@example.org"), False)


# -- no small mail may stall intake -----------------------------------------------------------
# Each of these once took minutes in a quadratic regular expression (diffstat: `^\s*` under
# MULTILINE; trailers: a lazy `.*?` before `\s*$`; pull requests: DOTALL `.*` from every
# "The following changes" line), while take_in held the store's write transaction. A linear
# scan needs milliseconds; the parse runs in a child process so that a regression fails in
# 10 s instead of hanging the suite.

PARSE_FROM_STDIN = textwrap.dedent(
    """
    import sys
    from patchbot.mail import parse_mail
    parse_mail(sys.stdin.buffer.read())
    """
)
SLOW_HEAD = b"From: Jane <jane@example.org>\nSubject: [PATCH] x\nMessage-Id: <slow@example.org>\n\n"


@pytest.mark.parametrize(
    "body",
    [
        b" \n" * 40_000,  # 80 KB: was ~65 s
        b"Acked-by: x" + b" " * 100_000 + b"y\n",  # 100 KB: was ~89 s
        b"The following changes since commit 1\n" * 16_000,  # 590 KB: was ~70 s
    ],
    ids=["diffstat-blank-lines", "trailer-long-line", "pull-request-lines"],
)
def test_a_small_mail_is_parsed_in_seconds(body):
    try:
        subprocess.run([sys.executable, "-c", PARSE_FROM_STDIN], input=SLOW_HEAD + body, timeout=10, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"parse_mail took more than 10 s on a {len(SLOW_HEAD + body) // 1024} KB mail")
