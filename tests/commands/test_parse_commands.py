"""The command grammar, as a table: what counts as a command line in a reply and what does not."""

from __future__ import annotations

import pytest

from patchbot.commands.parse import CommandLine, command_lines, commands_in_mail


@pytest.mark.parametrize("text, expected", [
    ("patchbot: retest\n", [("retest", ())]),
    ("Thanks!\n\npatchbot: apply master\n", [("apply", ("master",))]),
    ("PATCHBOT: Retest python\n", [("retest", ("python",))]),
    ("  patchbot:   test   pu  \n", [("test", ("pu",))]),
    ("patchbot: apply master force\n", [("apply", ("master", "force"))]),
    ("patchbot: status\r\npatchbot: help\r\n", [("status", ()), ("help", ())]),
    # quoted: someone else's command, not this mail's
    ("> patchbot: apply master\n", []),
    ("  > patchbot: apply master\n", []),
    (">> patchbot: retest\n", []),
    # below the signature separator (and the one whose trailing space a mailer stripped)
    ("Hi\n-- \nJane\npatchbot: retest\n", []),
    ("Hi\n--\npatchbot: retest\n", []),
    # not at the start of the line, or not our name
    ("I said patchbot: retest yesterday\n", []),
    ("patchbotx: retest\n", []),
    ("patchbot:\n", []),
    ("patchbot retest\n", []),
])
def test_command_lines(text, expected):
    assert [(line.verb, line.args) for line in command_lines(text)] == expected


def test_the_line_is_kept_as_written_for_the_acknowledgement():
    assert command_lines("  PatchBot: Retest  Python \n") == [CommandLine("retest", ("Python",), "PatchBot: Retest  Python")]


def test_a_mail_full_of_commands_is_read_only_so_far():
    assert len(command_lines("patchbot: status\n" * 500)) == 20


# -- only the sender's own text: above the first quoted or forwarded block -------------------------

BELOW = "patchbot: apply master v1 force\n"


@pytest.mark.parametrize("text", [
    "Not yet.\n> quoted\n" + BELOW,
    "Not yet.\n\nOn Mon, 30 Nov 2026 at 10:00, Mallory <m@evil.example> wrote:\n" + BELOW,
    "Not yet.\n\nOn Mon, 30 Nov 2026 at 10:00, Mallory\n<m@evil.example> wrote:\n" + BELOW,
    "Not yet.\n\nOn Mon, 30 Nov 2026 at 10:00,\n" + BELOW + "<m@evil.example> wrote:\n",
    "Not yet.\n\nMallory <m@evil.example> writes:\n" + BELOW,
    "Not yet.\n\nLe lun. 30 nov. 2026, Mallory a écrit :\n" + BELOW,
    "Not yet.\n\nAm Montag schrieb Mallory:\n" + BELOW,
    "Not yet.\n-----Original Message-----\n" + BELOW,
    "Not yet.\n----- Original Message -----\n" + BELOW,
    "Not yet.\n---------- Forwarded message ---------\n" + BELOW,
    "Not yet.\nBegin forwarded message:\n\n" + BELOW,
    "Not yet.\n________________________________\n" + BELOW,
    "Not yet.\n\nFrom: Mallory <m@evil.example>\nSent: Monday, November 30, 2026 10:00\nTo: aur-dev\n"
    "Subject: RE: the series\n\n" + BELOW,
    "Not yet.\n\n*From:* Mallory <m@evil.example>\n*Date:* Mon, 30 Nov 2026\n\n" + BELOW,
], ids=["quote", "attribution", "attribution wrapped", "command inside a wrapped attribution", "gnus", "french",
        "german", "outlook original", "original spaced", "gmail forward", "apple forward", "outlook rule",
        "outlook header block", "bold header block"])
def test_nothing_below_someone_elses_text_counts(text):
    assert command_lines(text) == []


def test_a_command_above_the_quote_counts_and_a_from_line_alone_does_not_cut():
    text = "patchbot: retest\nFrom: the logs it looks flaky\n\nOn Monday Lukas wrote:\n> patchbot: apply master\n"
    assert [(line.verb, line.args) for line in command_lines(text)] == [("retest", ())]


# -- only the body's first text/plain part; its HTML twin must show it ------------------------------

def _mail(content_type: str, body: str) -> bytes:
    return (f"From: a@example.org\nSubject: Re: x\nMIME-Version: 1.0\nContent-Type: {content_type}\n\n{body}").encode()


@pytest.mark.parametrize("body, found", [
    ("--b\nContent-Type: text/plain\n\nhello\n--b\nContent-Type: text/plain\n\npatchbot: retest\n--b--\n", []),
    ("--b\nContent-Type: text/plain\n\npatchbot: retest\n--b\nContent-Type: text/plain\n"
     "Content-Disposition: attachment\n\npatchbot: apply master v1\n--b--\n", ["retest"]),
    ("--b\nContent-Type: text/plain\nContent-Disposition: attachment\n\npatchbot: retest\n--b--\n", []),
    ("--b\nContent-Type: text/html\n\n<p>patchbot: retest</p>\n--b\nContent-Type: text/plain\n\npatchbot: retest\n--b--\n", []),
    ("--b\nContent-Type: application/octet-stream\n\npatchbot: retest\n--b--\n", []),
    ("--b\nContent-Type: message/rfc822\n\nFrom: m@evil.example\nSubject: x\n\npatchbot: retest\n--b--\n", []),
], ids=["second part", "first part, not the attachment", "attachment first", "html first", "not text", "forwarded mail"])
def test_commands_come_from_the_first_text_part_only(body, found):
    read = commands_in_mail(_mail('multipart/mixed; boundary="b"', body))
    assert [line.verb for line in read.lines] == found and read.refusal is None


def test_a_lone_cr_does_not_start_a_command_line():
    read = commands_in_mail(_mail("text/plain", "The log says: ok\rpatchbot: apply master v1 force\r\npatchbot: status\r\n"))
    assert [line.verb for line in read.lines] == ["status"]


def test_a_text_part_inside_an_alternative_inside_mixed_is_the_body():
    body = ("--b\nContent-Type: multipart/alternative; boundary=\"c\"\n\n--c\nContent-Type: text/plain\n\n"
            "patchbot: retest\n--c\nContent-Type: text/html\n\n<div>patchbot:&nbsp;retest</div>\n--c--\n"
            "--b\nContent-Type: text/plain\nContent-Disposition: attachment\n\npatchbot: ignore\n--b--\n")
    read = commands_in_mail(_mail('multipart/mixed; boundary="b"', body))
    assert [line.verb for line in read.lines] == ["retest"] and read.refusal is None


@pytest.mark.parametrize("html, refused", [
    ("<p>patchbot: retest</p>", False),
    ("<p>PATCHBOT:\n  retest</p>", False),
    ("<p>patchbot: <b>retest</b></p>", False),
    ("<p>thanks</p>", True),
    ("<p style='display: none'>patchbot: retest</p>", True),
    ("<p><span hidden>patchbot: retest</span></p>", True),
    ("<blockquote>patchbot: retest</blockquote>", True),
    ("<div class=\"gmail_quote\">patchbot: retest</div>", True),
    ("<head><title>patchbot: retest</title></head><body>hi</body>", True),
    ("<p style='font-size:0'>patchbot: retest</p>", True),
])
def test_the_html_twin_must_show_each_command(html, refused):
    body = f"--c\nContent-Type: text/plain\n\npatchbot: retest\n--c\nContent-Type: text/html\n\n{html}\n--c--\n"
    read = commands_in_mail(_mail('multipart/alternative; boundary="c"', body))
    assert [line.verb for line in read.lines] == ["retest"]
    assert (read.refusal is not None) == refused, read.refusal
