"""Mail loops: what a program sent is never answered, whatever it carries.

Patch mails made with git from the sample project go through ingest and the pipeline, with a
real SMTP server on 127.0.0.1: a series from patchbot's own address (or with its Message-ID
domain), one whose mail says `Auto-Submitted: auto-generated` (or auto-replied), and a bounce
(MAILER-DAEMON, multipart/report, the patch quoted inside) are neither tested nor answered; the
same series with `Auto-Submitted: no` is. patchbot's own replies, echoed back by the list, are
taken in and start nothing.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from outbox_support import aurweb_repo  # noqa: F401 - a module-scoped fixture: the sample repository
from outbox_support import BOT, LIST, Bot, Handler, parse, query, smtp_server, write_config
from patchbot.series.intake import IngestSummary, ingest
from patchbot.reply.loops import reason_not_to_answer
from patchbot.sources.files import source_for

ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
       "GIT_AUTHOR_NAME": "Jane Doe", "GIT_AUTHOR_EMAIL": "jane@example.org", "GIT_COMMITTER_NAME": "Jane Doe",
       "GIT_COMMITTER_EMAIL": "jane@example.org", "GIT_AUTHOR_DATE": "@1588582800 +0000",
       "GIT_COMMITTER_DATE": "@1588582800 +0000"}
LIST_HEADERS = ("To: aur-dev@lists.archlinux.org\n"
                "List-Id: Arch User Repository (AUR) Development <aur-dev.lists.archlinux.org>\n"
                "List-Post: <mailto:aur-dev@lists.archlinux.org>\n")


def format_patch(repo: Path, folder: Path) -> str:
    """A one-line PHP change as git format-patch writes it: the commit message and diff, no headers."""
    clone = folder / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, env=ENV)
    rpc = clone / "web/lib/rpc.php"
    rpc.write_text(rpc.read_text() + "\n// The fields come from schema/schema.sql.\n")
    subprocess.run(["git", "commit", "-q", "-am", "rpc: say where the fields come from\n\n"
                    "Signed-off-by: Jane Doe <jane@example.org>"], cwd=clone, check=True, env=ENV)
    text = subprocess.run(["git", "format-patch", "-1", "--stdout"], cwd=clone, check=True, env=ENV,
                          capture_output=True, text=True).stdout
    return text.split("\n\n", 1)[1]  # the headers are written per case below


def patch_mail(body: str, sender: str, subject: str, message_id: str, extra: str = "") -> str:
    return (f"From: {sender}\nSubject: {subject}\nDate: Mon, 04 May 2020 09:00:00 +0000\n"
            f"Message-Id: <{message_id}>\n{extra}MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n{LIST_HEADERS}\n{body}")


def bounce_mail(original: str, subject: str, message_id: str) -> str:
    """A delivery status notification (RFC 3464) that quotes the patch mail it could not deliver;
    it carries no Auto-Submitted: only its sender and its type say what it is."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mail.example.org>\n"
        f"Subject: {subject}\nDate: Mon, 04 May 2020 09:05:00 +0000\nMessage-Id: <{message_id}>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\n'
        f"{LIST_HEADERS}\n"
        "This is a MIME-encapsulated message.\n\n--BOUNDARY\nContent-Type: text/plain; charset=us-ascii\n\n"
        "I'm sorry to have to inform you that your message could not be delivered.\n\n"
        "--BOUNDARY\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mail.example.org\n\n"
        "Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n\n"
        f"--BOUNDARY\nContent-Type: message/rfc822\n\n{original}\n--BOUNDARY--\n"
    )


# case -> (the mail's Message-ID, the reason patchbot stays quiet, or None when it answers)
CASES = {
    "from patchbot's own address": ("own.loop@example.org", "our own mail"),
    "with patchbot's Message-ID domain": ("mine.loop@patchbot.example.org", "our own mail"),
    "Auto-Submitted: auto-generated": ("generated.loop@example.org", "auto-submitted"),
    "Auto-Submitted: auto-replied; owner-email": ("replied.loop@example.org", "auto-submitted"),
    "a bounce from MAILER-DAEMON, multipart/report": ("bounce.loop@mail.example.org", "a bounce"),
    "Auto-Submitted: no": ("human.loop@example.org", None),
}


def mails_for(body: str) -> dict[str, str]:
    jane = "Jane Doe <jane@example.org>"
    return {
        "from patchbot's own address": patch_mail(body, f"patchbot <{BOT}>", "[PATCH] rpc: own", "own.loop@example.org"),
        "with patchbot's Message-ID domain": patch_mail(body, jane, "[PATCH] rpc: mine", "mine.loop@patchbot.example.org"),
        "Auto-Submitted: auto-generated": patch_mail(body, "CI Robot <ci@example.org>", "[PATCH] rpc: generated",
                                                      "generated.loop@example.org", "Auto-Submitted: auto-generated\n"),
        "Auto-Submitted: auto-replied; owner-email": patch_mail(
            body, "Vacation <away@example.org>", "[PATCH] rpc: replied", "replied.loop@example.org",
            'Auto-Submitted: auto-replied; owner-email="away@example.org"\n'),
        # The bounce keeps the patch's subject, as some MTAs do.
        "a bounce from MAILER-DAEMON, multipart/report": bounce_mail(
            patch_mail(body, jane, "[PATCH] rpc: bounced", "bounced-original.loop@example.org"),
            "[PATCH] rpc: bounced", "bounce.loop@mail.example.org"),
        "Auto-Submitted: no": patch_mail(body, jane, "[PATCH] rpc: human", "human.loop@example.org", "Auto-Submitted: no\n"),
    }


@dataclass
class Outcome:
    bot: Bot
    handler: Handler
    passes: list  # counts of every pass
    echo: list  # counts of the pass after the replies came back through the list


def write_mbox(path: Path, mails: list[str | bytes]) -> Path:
    with path.open("wb") as file:
        for mail in mails:
            data = mail.encode() if isinstance(mail, str) else mail.replace(b"\r\n", b"\n")
            file.write(b"From list@lists.archlinux.org Mon May 04 09:00:00 2020\n" + data.rstrip(b"\n") + b"\n\n")
    return path


@pytest.fixture(scope="module")
def outcome(aurweb_repo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loops")
    body = format_patch(aurweb_repo, folder)
    handler = Handler()
    with smtp_server(handler) as port:
        bot = Bot(write_config(folder, aurweb_repo, port))
        summary = IngestSummary()
        ingest(bot.store, source_for(str(write_mbox(folder / "list.mbox", list(mails_for(body).values())))),
               summary, lambda: None)
        assert summary.new == len(CASES) and not summary.rejected and not summary.failed, summary
        passes = [bot.run(), bot.run()]
        # The list sends patchbot's replies back to everyone, patchbot included.
        echoed = write_mbox(folder / "echo.mbox", [data for _, _, data in handler.messages])
        ingest(bot.store, source_for(str(echoed)), IngestSummary(), lambda: None)
        echo = bot.run()
        yield Outcome(bot, handler, passes, echo)
        bot.close()


def series_of(outcome: Outcome, message_id: str):
    series = outcome.bot.store.series_of_mail(f"<{message_id}>")
    assert series is not None and series.complete, message_id
    return series


@pytest.mark.parametrize("case", [case for case, (_, reason) in CASES.items() if reason])
def test_mail_a_program_sent_is_neither_tested_nor_answered(outcome, case):
    message_id, reason = CASES[case]
    record = outcome.bot.store.mail(f"<{message_id}>")
    assert record.facts.kind == "patch", record  # a patch like any other, but for who sent it
    assert reason_not_to_answer(record.facts, outcome.bot.config) == reason
    series = series_of(outcome, message_id)
    db = outcome.bot.store.path
    assert query(db, "SELECT count(*) FROM test_requests WHERE series_id = ?", series.id) == [(0,)]
    assert query(db, "SELECT count(*) FROM test_runs WHERE series_id = ?", series.id) == [(0,)]
    assert query(db, "SELECT count(*) FROM outbox WHERE series_id = ?", series.id) == [(0,)]
    assert not [data for _, _, data in outcome.handler.messages if str(parse(data)["In-Reply-To"]) == f"<{message_id}>"]


def test_the_same_patch_with_auto_submitted_no_is_answered(outcome):
    message_id, _ = CASES["Auto-Submitted: no"]
    series = series_of(outcome, message_id)
    assert len(outcome.handler.messages) == 1
    sender, recipients, data = outcome.handler.messages[0]
    reply = parse(data)
    assert str(reply["In-Reply-To"]) == f"<{message_id}>"
    assert (sender, recipients) == (BOT, (LIST, "jane@example.org"))
    assert str(reply["X-Patchbot-Series"]) == f"{series.id}/v1"
    assert "every suite passed" in reply.get_content()
    assert outcome.passes[0].get("replies sent") == 1 and outcome.passes[0].get("series tested") == 1
    assert not {"series tested", "replies sent"} & set(outcome.passes[1])


def test_patchbots_own_reply_echoed_by_the_list_starts_nothing(outcome):
    reply_id = str(parse(outcome.handler.messages[0][2])["Message-ID"])
    record = outcome.bot.store.mail(reply_id)
    assert record is not None and record.facts.kind == "reply"
    assert reason_not_to_answer(record.facts, outcome.bot.config) == "our own mail"
    assert not {"tests requested", "series tested", "replies queued", "replies sent"} & set(outcome.echo), outcome.echo
    assert len(outcome.handler.messages) == 1
