"""The sample aur-dev month end to end: mails in, real tests in bwrap, replies out over real SMTP.

The mails are fed as the list delivers them (one mail, then a pass of the pipeline, as demo.py
does), replies go to an aiosmtpd server on 127.0.0.1, and each reply is read back from the bytes
the server received, header by header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from outbox_support import aurweb_repo  # noqa: F401 - a module-scoped fixture: the sample repository
from outbox_support import (
    BOT, BOT_DOMAIN, LIST, RETEST, REVIEW, SERIES_THREADS, V1_COVER, V2_COVER, Bot, Handler, cli, cli_ok,
    message_id_of, outbox_rows, parse, sample_mails, smtp_server, split_before_v2, write_config,
    write_mail_files,
)
from patchbot.series.intake import take_in

# What each reply must say, by the Message-ID of the mail it answers.
EXPECTED_TEXT = {
    "<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>": [
        "This patch applied cleanly on master", "every suite passed"],
    "<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>": [
        "This patch applied cleanly on master", "1 new failure.",
        "== python: new failure; passes on master ==", "::test_search_by_maintainer_is_left_to_php"],
    V1_COVER: [
        "v1 of this series applied cleanly on master", "1 new failure.",
        "== parity: new failure; skipped on master ==", "::test_same_answer[suggest]"],
    "<1dcc13861481ed48c66909df6f226e1b5ef92b4a.1588842000.git.eli.schwartz@archlinux.org>": [
        "This patch did not apply on master", "patch 1/1 failed.", "aurweb/rpc.py, the hunk at line 1"],
    V2_COVER: [
        "v2 of this series applied cleanly on master", "every suite passed",
        "Compared with the previous version: 1 fixed.", "fixed:          test/", "::test_same_answer[suggest]"],
}


@dataclass
class Delivered:
    bot: Bot
    handler: Handler
    originals: dict  # Message-ID -> the sample mail as parsed
    sent_after: dict  # Message-ID of each mail fed -> replies at the server after its pass
    again: list  # the counts of two more passes once every mail was in


@pytest.fixture(scope="module")
def delivered(aurweb_repo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("end-to-end")
    handler = Handler()
    with smtp_server(handler) as port:
        bot = Bot(write_config(folder, aurweb_repo, port))
        mails = sample_mails(commands=True)
        sent_after = {}
        for raw in mails:
            bot.feed([raw])
            sent_after[message_id_of(raw.data)] = len(handler.messages)
        again = [bot.run(), bot.run()]
        yield Delivered(bot, handler, {message_id_of(raw.data): parse(raw.data) for raw in mails}, sent_after, again)
        bot.close()


PY_MAINTAINER = "<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>"
# The replies that answer a series (the test results), in the order they are sent: Lukas's
# "patchbot: retest" in the Python port's thread gives it a second one.
RESULT_THREADS = [*list(SERIES_THREADS)[:4], PY_MAINTAINER, V2_COVER]


def reply_to(delivered: Delivered, message_id: str, number: int = 1):
    found = [(sender, recipients, data) for sender, recipients, data in delivered.handler.messages
             if str(parse(data)["In-Reply-To"]).strip() == message_id]
    assert len(found) == (RESULT_THREADS.count(message_id) or 1), f"{len(found)} replies to {message_id}"
    return found[number - 1]


def test_one_reply_per_tested_series_version_and_one_per_retest(delivered):
    replies = [parse(data) for _, _, data in delivered.handler.messages]
    results = [reply for reply in replies if str(reply["In-Reply-To"]) != RETEST]
    assert [str(reply["In-Reply-To"]) for reply in results] == RESULT_THREADS
    assert len({str(reply["Message-ID"]) for reply in replies}) == 7
    series = [delivered.bot.store.series_of_mail(message_id) for message_id in RESULT_THREADS]
    assert [str(reply["X-Patchbot-Series"]) for reply in results] == [f"{s.id}/v{s.version}" for s in series]
    rows = delivered.bot.store.replies()
    assert [(row.status, row.attempts) for row in rows] == [("sent", 1)] * 7
    assert [row.message_id for row in rows] == [str(reply["Message-ID"]) for reply in replies]
    assert [row.key.rsplit("/", 1)[-1] for row in rows if "/result/" in row.key] == ["1"] * 4 + ["2", "1"]


def test_the_maintainers_retest_is_acknowledged_and_answered_with_a_second_result(delivered):
    sender, recipients, data = reply_to(delivered, RETEST)
    ack = parse(data)
    assert (sender, recipients) == (BOT, ("lukas@example.org",))  # a retest changes nothing the list sees
    assert str(ack["References"]).split() == [PY_MAINTAINER, RETEST]
    assert str(ack["Auto-Submitted"]) == "auto-replied"
    body = ack.get_content().replace("\r\n", "\n")
    assert "Done:\n  > patchbot: retest\n    the series will be tested; the result follows in this thread" in body, body
    second = parse(reply_to(delivered, PY_MAINTAINER, 2)[2])
    assert "1 new failure." in second.get_content()
    assert str(second["Message-ID"]) != str(parse(reply_to(delivered, PY_MAINTAINER)[2])["Message-ID"])


@pytest.mark.parametrize("thread", list(EXPECTED_TEXT))
def test_each_reply_says_what_happened(delivered, thread):
    body = parse(reply_to(delivered, thread)[2]).get_content()
    for text in EXPECTED_TEXT[thread]:
        assert text in body, body
    others = {"every suite passed", "new failure", "did not apply", "Compared with the previous version"}
    for text in others - {piece for expected in EXPECTED_TEXT[thread] for piece in others if piece in expected}:
        assert text not in body, (text, body)


@pytest.mark.parametrize("thread", list(SERIES_THREADS))
def test_reply_headers(delivered, thread):
    sender, recipients, data = reply_to(delivered, thread)
    reply = parse(data)
    original = delivered.originals[thread]
    name, address = SERIES_THREADS[thread]

    assert reply.get_all("Subject") == ["Re: " + str(original["Subject"])]
    assert str(reply["In-Reply-To"]) == thread
    references = str(reply["References"]).split()
    assert references[-1] == thread
    expected_refs = [V1_COVER, V2_COVER] if thread == V2_COVER else [thread]
    assert references == expected_refs
    assert str(reply["From"]) == f"patchbot <{BOT}>"
    assert [a.addr_spec for a in reply["To"].addresses] == [LIST]
    assert [(a.display_name, a.addr_spec) for a in reply["Cc"].addresses] == [(name, address)]
    assert (sender, recipients) == (BOT, (LIST, address))
    assert str(reply["Auto-Submitted"]) == "auto-replied"
    assert re.fullmatch(rf"<[^<>@\s]+@{re.escape(BOT_DOMAIN)}>", str(reply["Message-ID"]))
    series = delivered.bot.store.series_of_mail(thread)
    assert reply.get_all("X-Patchbot-Series") == [f"{series.id}/v{series.version}"]
    assert reply.get_content_type() == "text/plain" and reply.get_content_charset() == "utf-8"


@pytest.mark.parametrize("thread", ["<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>", V1_COVER, V2_COVER])
def test_non_ascii_author_names_are_encoded_words(delivered, thread):
    _, _, data = reply_to(delivered, thread)
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    assert all(byte < 0x80 for byte in head), [line for line in head.splitlines() if not line.isascii()]
    cc = [line for line in re.split(rb"\r?\n(?![ \t])", head) if line.lower().startswith(b"cc:")]
    assert len(cc) == 1 and re.search(rb"=\?utf-8\?[qb]\?", cc[0], re.I), cc
    name, address = SERIES_THREADS[thread]
    assert [(a.display_name, a.addr_spec) for a in parse(data)["Cc"].addresses] == [(name, address)]


def test_every_header_block_is_seven_bit(delivered):
    for _, _, data in delivered.handler.messages:
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        assert head.isascii()


def test_running_again_sends_nothing(delivered):
    assert len(delivered.handler.messages) == 7
    for counts in delivered.again:
        assert not {"tests requested", "series tested", "replies queued", "replies sent", "commands done"} & set(counts), counts
    assert len(delivered.bot.store.replies()) == 7


def test_a_discussion_reply_gets_no_reply_and_a_retest_gets_two(delivered):
    order = list(delivered.sent_after)
    before = delivered.sent_after[order[order.index(REVIEW) - 1]]
    assert delivered.sent_after[REVIEW] == before
    before = delivered.sent_after[order[order.index(RETEST) - 1]]
    assert delivered.sent_after[RETEST] == before + 2  # the acknowledgement and the new result
    answered = {str(parse(data)["In-Reply-To"]) for _, _, data in delivered.handler.messages}
    assert REVIEW not in answered and RETEST in answered


def test_each_reply_was_sent_when_its_series_came_in(delivered):
    # A series is answered in the pass that follows its last mail, before later mails arrive.
    assert delivered.sent_after["<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>"] == 1
    assert delivered.sent_after["<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>"] == 2
    assert delivered.sent_after["<a736de491107c8c8f35cc797b8958fcb6b147975.1588755600.git.filipe.lains@archlinux.org>"] == 3
    assert delivered.sent_after["<1dcc13861481ed48c66909df6f226e1b5ef92b4a.1588842000.git.eli.schwartz@archlinux.org>"] == 4
    assert delivered.sent_after["<0af24b5cdfa8b25a65145ab6d9393b9dd2ce150f.1589014800.git.filipe.lains@archlinux.org>"] == 7


def test_the_cli_ingest_and_run_make_the_same_replies(aurweb_repo, tmp_path, delivered):
    """`patchbot ingest` + `patchbot run` in subprocesses, in two deliveries (v2 comes later),
    and again once all is in (every mail already known): five replies, each once."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = write_config(tmp_path, aurweb_repo, port)
        first, second = split_before_v2(sample_mails())
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", first, "a"))
        cli_ok(config, "run")
        assert len(handler.messages) == 4
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", second, "b"))
        cli_ok(config, "run")
        assert len(handler.messages) == 5
        cli_ok(config, "run")
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "again", first + second, "c"))  # known already
        cli_ok(config, "run")
    assert len(handler.messages) == 5
    rows = outbox_rows(tmp_path / "patchbot.db")
    assert [(row["status"], row["attempts"]) for row in rows] == [("sent", 1)] * 5
    # The same keys give the same headers and words (durations aside); two databases never the
    # same Message-ID (issue 13: its id is made of the database's instance id and the key).
    in_process = {}  # the first reply in each thread (the CLI runs get no retest)
    for _, _, data in delivered.handler.messages:
        in_process.setdefault(str(parse(data)["In-Reply-To"]), parse(data))
    for sender, recipients, data in handler.messages:
        reply = parse(data)
        twin = in_process[str(reply["In-Reply-To"])]
        for name in ("Subject", "To", "Cc", "References", "X-Patchbot-Series", "Auto-Submitted"):
            assert str(reply[name]) == str(twin[name]), name
        assert str(reply["Message-ID"]) != str(twin["Message-ID"])
        assert _without_durations(reply.get_content()) == _without_durations(twin.get_content())


def _without_durations(body: str) -> str:
    body = re.sub(r" +\d+\.\d s$", "", body.replace("\r\n", "\n"), flags=re.M)
    body = re.sub(r" at 0x[0-9a-f]+", " at 0x...", body)  # object addresses in tracebacks
    return re.sub(r"patchbot log \d+", "patchbot log N", body)


# -- what the replies point at ------------------------------------------------------------------


def _log_command(body: str) -> list[str]:
    found = re.search(r"^Full logs: patchbot log (\d+)", body, re.M)
    assert found, body
    return ["log", found.group(1)]


def test_the_log_command_a_reply_names_prints_the_log(delivered):
    body = parse(reply_to(delivered, "<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>")[2]).get_content()
    result = cli(delivered.bot.config_path, *_log_command(body))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "test_search_by_maintainer_is_left_to_php" in result.stdout.decode()


def test_a_reply_to_a_series_that_did_not_apply_names_no_missing_log(delivered):
    body = parse(reply_to(delivered, "<1dcc13861481ed48c66909df6f226e1b5ef92b4a.1588842000.git.eli.schwartz@archlinux.org>")[2]).get_content()
    if "patchbot log" not in body:
        return
    result = cli(delivered.bot.config_path, *_log_command(body))
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_a_retest_delivered_in_one_burst_with_its_patch_is_a_second_test(aurweb_repo, tmp_path):
    """What the list hears must not depend on delivery timing: a burst that came in before the
    first pass once let the retest absorb the series' own first test (serve's test saw 6
    replies instead of 7 on a loaded machine)."""
    handler = Handler()
    with smtp_server(handler) as port:
        bot = Bot(write_config(tmp_path, aurweb_repo, port))
        for raw in sample_mails(commands=True):
            if message_id_of(raw.data) in (PY_MAINTAINER, RETEST):
                take_in(bot.store, raw)
        bot.run()
        bot.close()
    threads = [str(parse(data)["In-Reply-To"]) for _, _, data in handler.messages]
    assert sorted(threads) == sorted([PY_MAINTAINER, PY_MAINTAINER, RETEST]), threads
