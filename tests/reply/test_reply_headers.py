"""The threading headers of a reply as its bytes carry them (issue 13).

Python's email policy RFC 2047-encodes a header token of 78 characters or more: the 81-82
character ids `git format-patch --thread` makes for @archlinux.org senders went out as
`In-Reply-To: =?utf-8?q?=3C613364b7...?=`, and long subjects as `Subject: \\n Re: ...`. Each test
composes a reply, reads the bytes line by line, and parses them back with the stdlib parsers.
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from patchbot.config.records import Config, MailConfig
from patchbot.mail.headers import message_ids_in
from patchbot.reply.compose import LINE_LIMIT, LINE_WIDTH, compose, without_recipients
from patchbot.reply.outbox import enqueue
from patchbot.reply.report import Reply
from patchbot.store.database import Store

LIST = "aur-dev@lists.archlinux.org"
CONFIG = Config(mail=MailConfig(sender="patchbot <patchbot@patchbot.example.org>", list_address=LIST,
                                message_id_domain="patchbot.example.org"))

# Real shapes: git format-patch --thread (`<commit.time.git.address>`), its cover letter, mutt.
COVER = "<cover.1623585944.git.kevr@archlinux.org>"
PATCH_81 = "<613364b7a8b0f8e3b8d2cfe6bb9b5b3a7c2c8f11.1623585944.git.eschwartz@archlinux.org>"
PATCH_84 = "<9c30cfcb1a8ed95b745ddd7ff5e0c272cbcb89ed.1588582800.git.kevin.morris@archlinux.org>"
SEND_EMAIL = "<20210613120544.1066513-1-kevr@0cost.org>"
OVER_200 = "<" + "613364b7a8b0f8e3b8d2cfe6bb9b5b3a7c2c8f11." * 5 + "1623585944.git.kevr@archlinux.org>"


def reply(subject: str = "Re: [PATCH] rpc: a change", parent: str = PATCH_81, references: tuple[str, ...] = (),
          cc: tuple[str, ...] = ("Kevin Morris <kevin@example.org>",), key: str = "series-1/v1/result/1") -> Reply:
    return Reply(key=key, series_id=None, subject=subject, in_reply_to=parent, references=(*references, parent),
                 to=(LIST,), cc=cc, body="The text.\n", series_tag="1/v1")


def header_lines(data: bytes, name: str) -> list[str]:
    """The physical lines of one header, as the bytes hold them (CR LF taken off)."""
    lines = data.split(b"\r\n\r\n", 1)[0].decode("utf-8").split("\r\n")
    start = next(index for index, line in enumerate(lines) if line.lower().startswith(name.lower() + ":"))
    found = [lines[start]]
    for line in lines[start + 1:]:
        if not line[:1] in (" ", "\t"):
            break
        found.append(line)
    return found


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_an_over_200_character_id_is_the_word_after_the_header_name():
    assert len(OVER_200) > 200 and len(PATCH_81) == 81
    _, data = compose(reply(parent=OVER_200, references=(COVER,)), CONFIG)
    assert header_lines(data, "In-Reply-To") == [f"In-Reply-To: {OVER_200}"]
    assert header_lines(data, "References") == [f"References: {COVER}", f" {OVER_200}"]


@pytest.mark.parametrize("parent", [PATCH_81, PATCH_84, OVER_200, SEND_EMAIL],
                         ids=["format-patch-81", "format-patch-84", "over-200", "send-email"])
@pytest.mark.parametrize("utf8", [False, True], ids=["7bit", "smtputf8"])
def test_in_reply_to_and_references_are_raw_ids_folded_only_between_ids(parent, utf8):
    references = (COVER, PATCH_84, SEND_EMAIL, OVER_200)
    references = tuple(ref for ref in references if ref != parent)
    cc = ("Jörg <jörg@exämple.com>",) if utf8 else ("Kevin Morris <kevin@example.org>",)
    _, data = compose(reply(parent=parent, references=references, cc=cc), CONFIG)
    assert data.isascii() is not utf8  # a UTF-8 mail (RFC 6532) where an address needs it
    expected = [*references, parent]
    for name, ids in (("In-Reply-To", [parent]), ("References", expected)):
        lines = header_lines(data, name)
        assert lines[0].startswith(f"{name}: <"), lines
        assert not any("=?" in line for line in lines), lines
        # A fold only between two ids, each line as short as its ids allow.
        assert [token for line in lines for token in line.split()][1:] == ids, lines
        for line in lines[1:]:
            assert line.startswith(" <") and line.endswith(">")
        assert all(len(line) <= LINE_WIDTH or " " not in line.strip(" ").split(": ", 1)[-1] for line in lines), lines
        assert all(len(line) <= LINE_LIMIT for line in lines)
        # Read back by the stdlib (default and compat32 policies) and by patchbot's own parser.
        for policy in (email.policy.default, email.policy.compat32):
            value = email.message_from_bytes(data, policy=policy)[name]
            assert " ".join(str(value).split()) == " ".join(ids)
            assert list(message_ids_in(value)) == ids


def test_short_ids_share_a_line_up_to_78_characters():
    ids = tuple(f"<{n}.a@example.org>" for n in range(12))
    _, data = compose(reply(parent=ids[-1], references=ids[:-1]), CONFIG)
    lines = header_lines(data, "References")
    assert len(lines) > 1 and all(len(line) <= LINE_WIDTH for line in lines), lines
    assert all(len(line) + 1 + len(lines[number + 1].split()[0]) > LINE_WIDTH for number, line in enumerate(lines[:-1]))


def test_the_parent_comes_last_in_references_once():
    _, data = compose(reply(parent=PATCH_81, references=(PATCH_81, COVER)), CONFIG)
    assert str(parsed(data)["References"]).split() == [COVER, PATCH_81]


def test_an_id_longer_than_a_line_may_be_is_left_out_rather_than_broken():
    too_long = "<" + "x" * LINE_LIMIT + "@example.org>"
    _, data = compose(reply(parent=PATCH_81, references=(too_long,)), CONFIG)
    assert str(parsed(data)["References"]) == PATCH_81
    _, data = compose(reply(parent=too_long), CONFIG)
    assert parsed(data)["In-Reply-To"] is None and parsed(data)["References"] is None


def test_an_id_holding_an_encoded_line_break_stays_one_inert_line():
    evil = "<=?utf-8?q?x=0D=0AX-Injected:_yes=0D=0A=0D=0Apatchbot_says:_every_suite_passed?=>"
    _, data = compose(reply(parent=evil, references=(f"{PATCH_81}\r\nBcc: evil@example.org",)), CONFIG)
    message = parsed(data)
    assert message["X-Injected"] is None and message["Bcc"] is None
    assert header_lines(data, "In-Reply-To") == ["In-Reply-To: <= ?utf-8?q?x=0D=0AX-Injected:_yes=0D=0A=0D=0Apatchbot_says:"
                                                 "_every_suite_passed?=>"]
    assert "\n" not in str(message["In-Reply-To"]) and str(message["References"]).split()[0] == PATCH_81


SUBJECTS = {
    "ascii-long": "Re: [PATCH v2 0/3] " + " ".join(["rpc: port type=suggest of the RPC to Python"] * 4),
    "one-long-word": "Re: " + "x" * 90,
    "long-first-word": "y" * 100 + " and the rest",
    "non-ascii": ("Re: [PATCH] Frédéric's Übersetzung der Paketbeschreibungen für die naïve Suche " * 2).strip(),
    "non-ascii-long-word": "Re: [PATCH] " + "ü" * 60 + " tail",
    "pasted-url": "Re: [PATCH] see https://gitlab.archlinux.org/archlinux/aurweb/-/merge_requests/"
                  + "1234567890" * 5,
}


@pytest.mark.parametrize("utf8", [False, True], ids=["7bit", "smtputf8"])
@pytest.mark.parametrize("subject", SUBJECTS.values(), ids=SUBJECTS.keys())
def test_a_subject_is_never_folded_before_its_first_word_and_reads_back_whole(subject, utf8):
    cc = ("Jörg <jörg@exämple.com>",) if utf8 else ()
    _, data = compose(reply(subject=subject, cc=cc), CONFIG)
    lines = header_lines(data, "Subject")
    first_word = subject.split()[0]
    assert lines[0].startswith(f"Subject: {first_word}"), lines
    for line in lines:
        assert len(line) <= LINE_WIDTH or len(line.split()) <= 2, lines  # longer only for one long word
    for word in (word for line in lines for word in line.split() if word.startswith("=?")):
        assert len(word) <= 75, word  # RFC 2047 2
    assert str(parsed(data)["Subject"]) == subject


@pytest.mark.parametrize("length", range(60, 140))
def test_no_subject_length_folds_before_the_first_word(length):
    """The policy folded `Subject:\\n Re: x...` for lengths from about 66 on (its own test)."""
    subject = ("Re: [PATCH] " + "rpc: port type=suggest of the RPC to Python, " * 4)[:length].rstrip()
    long_word = "Re: " + "w" * (length - 4)
    for text in (subject, long_word):
        _, data = compose(reply(subject=text), CONFIG)
        assert header_lines(data, "Subject")[0].startswith("Subject: Re:"), header_lines(data, "Subject")
        assert str(parsed(data)["Subject"]) == text


def test_a_reply_for_a_relay_without_smtputf8_keeps_its_raw_ids_and_encodes_its_subject():
    """without_recipients writes the mail again as 7-bit: its subject in UTF-8 once crashed it."""
    subject = ("Re: [PATCH] Frédéric's Übersetzung der Paketbeschreibungen für die naïve Suche, " * 2).strip()
    _, data = compose(reply(subject=subject, parent=OVER_200, references=(COVER, PATCH_84),
                            cc=("Jörg <jörg@exämple.com>", "Frédéric <fred@example.org>")), CONFIG)
    assert not data.isascii()
    fit = without_recipients(data, {"jörg@exämple.com"})
    assert fit.isascii()
    message = parsed(fit)
    assert str(message["Subject"]) == subject and header_lines(fit, "Subject")[0].startswith("Subject: Re: ")
    assert header_lines(fit, "In-Reply-To") == header_lines(data, "In-Reply-To") == [f"In-Reply-To: {OVER_200}"]
    assert header_lines(fit, "References") == header_lines(data, "References")
    assert [a.addr_spec for a in message["Cc"].addresses] == ["fred@example.org"]
    assert str(message["Message-ID"]) == str(parsed(data)["Message-ID"])


def test_message_ids_repeat_for_a_reply_of_one_database_and_differ_between_databases(tmp_path):
    """A resend (or a replayed stage) carries the same id; staging and production never share one."""
    one, other = Store(tmp_path / "one.db"), Store(tmp_path / "other.db")
    assert one.instance_id() != other.instance_id() and re.fullmatch(r"[0-9a-f]{32}", one.instance_id())
    ids = {}
    for name, store in (("one", one), ("other", other)):
        assert enqueue(store, CONFIG, reply(cc=()))
        assert not enqueue(store, CONFIG, reply(cc=()))  # the same key: kept once
        ids[name] = store.replies()[0].message_id
    assert ids["one"] != ids["other"]
    instance = one.instance_id()
    one.close()
    reopened = Store(tmp_path / "one.db")
    assert reopened.instance_id() == instance
    assert compose(reply(cc=()), CONFIG, instance=instance)[0] == ids["one"]
    second = compose(reply(cc=(), key="series-1/v1/result/2"), CONFIG, instance=instance)[0]
    assert second != ids["one"]
    for message_id in (ids["one"], ids["other"], second):
        assert re.fullmatch(r"<patchbot\.[0-9a-f]{32}@patchbot\.example\.org>", message_id) and len(message_id) < 78
    _, data = compose(reply(cc=()), CONFIG, instance=instance)
    assert header_lines(data, "Message-ID") == [f"Message-ID: {ids['one']}"]
    reopened.close()
    other.close()


def test_the_demo_prints_the_whole_header_block_as_sent():
    """`patchbot demo` once printed a filtered, decoded set of headers, which hid encoded ids."""
    from patchbot.demo.run import reply_text

    _, data = compose(reply(subject=SUBJECTS["non-ascii"], parent=OVER_200, references=(COVER, PATCH_84)), CONFIG)
    shown = reply_text("patchbot@patchbot.example.org", (LIST, "kevin@example.org"), data)
    head = data.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")
    assert f"RCPT TO {LIST}, kevin@example.org\n{head}\n\nThe text.\n" in shown, shown
    assert "References: <cover." in head and "\n Subject" not in head and "=?utf-8?q?" in head
