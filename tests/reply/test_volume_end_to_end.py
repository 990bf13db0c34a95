"""What the list hears with the default `[reply] results = "failures"` (issue 13 item 3), end to
end: the sample aur-dev month and a few commands through the whole pipeline, suites run for real
in the sandbox, every reply read back from a real SMTP server on 127.0.0.1 with its envelope.

The sample's authors are all first-time contributors, so their results reach the list whatever
they say; Kevin's second patch (it passes) is where the other rules show."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from commands.commands_support import EVE, KEVIN, LUKAS, PHP_FIX, command_mail
from reply.outbox_support import aurweb_repo  # noqa: F401 - module-scoped: the sample repository
from reply.outbox_support import (
    LIST, RETEST, V1_COVER, V2_COVER, Bot, Handler, message_id_of, parse, sample_mails, smtp_server, write_config,
)
from patchbot.sources import RawMail

PY_PORT = "<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>"
STALE = "<1dcc13861481ed48c66909df6f226e1b5ef92b4a.1588842000.git.eli.schwartz@archlinux.org>"
AGAIN = "<php-fix-again.0.git-send-email@example.org>"  # Kevin's second patch: it passes
KEVIN_ADDRESS, LUKAS_ADDRESS, EVE_ADDRESS = "kevin@example.org", "lukas@example.org", "eve@example.net"


def kevins_second_patch() -> RawMail:
    """The sample's PHP fix sent again by Kevin as a patch of its own (another title, another id)."""
    (raw,) = [mail for mail in sample_mails() if message_id_of(mail.data) == PHP_FIX]
    data = (raw.data.replace(PHP_FIX.encode(), AGAIN.encode())
            .replace(b"Subject: [PATCH] rpc: name the limit of suggestions", b"Subject: [PATCH] rpc: a name for the limit"))
    assert AGAIN.encode() in data and b"a name for the limit" in data
    return RawMail(data, "test")


# The commands after the month, in order: (name, mail).
COMMANDS = {
    "lukas retests kevin's second": command_mail("patchbot: retest\n", sender=LUKAS, parent=AGAIN),
    "kevin retests his second": command_mail("patchbot: retest\n", sender=KEVIN, parent=AGAIN),
    "kevin asks for its status": command_mail("patchbot: status\n", sender=KEVIN, parent=AGAIN),
    "lukas ignores the stale patch": command_mail("patchbot: ignore\n", sender=LUKAS, parent=STALE),
    "eve applies the php fix": command_mail("patchbot: apply master v1\n", sender=EVE, parent=PHP_FIX),
}


@dataclass(frozen=True)
class Heard:
    """One mail the SMTP server accepted: its envelope recipients, To and Cc, and what it answers."""

    envelope: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    answers: str
    body: str  # its words, one space apart


@dataclass
class Month:
    bot: Bot
    heard: list[Heard]
    after: dict[str, list[Heard]]  # what each mail fed (by name or Message-ID) made the server accept
    again: dict[str, int]


def heard_from(data: bytes, envelope: tuple[str, ...]) -> Heard:
    mail = parse(data)
    addresses = lambda name: tuple(a.addr_spec for a in mail[name].addresses) if mail[name] else ()  # noqa: E731
    # The body's words, however the reply wraps its lines.
    return Heard(envelope, addresses("To"), addresses("Cc"), str(mail["In-Reply-To"]), " ".join(mail.get_content().split()))


@pytest.fixture(scope="module")
def month(aurweb_repo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("volume")
    handler = Handler()
    with smtp_server(handler) as port:
        path = write_config(folder, aurweb_repo, port)
        text = path.read_text()
        assert '\nresults = "always"\n' in text, "the sample config's [reply] changed"
        path.write_text(text.replace('\nresults = "always"\n', "\n"))  # the default: failures
        bot = Bot(path)
        assert bot.config.reply.results == "failures"
        fed = [(message_id_of(raw.data), raw) for raw in sample_mails()]
        fed += [(AGAIN, kevins_second_patch()), *COMMANDS.items()]
        after = {}
        for name, raw in fed:
            before = len(handler.messages)
            bot.feed([raw])
            after[name] = [heard_from(data, envelope) for _, envelope, data in handler.messages[before:]]
        again = bot.run()
        yield Month(bot, [heard_from(data, envelope) for _, envelope, data in handler.messages], after, again)
        bot.close()


def only(month: Month, name: str, answers: str | None = None) -> Heard:
    found = [heard for heard in month.after[name] if answers is None or heard.answers == answers]
    assert len(found) == 1, (name, found)
    return found[0]


def test_first_time_contributors_results_reach_the_list_pass_or_fail(month):
    # Each is answered in the pass after the mail that completes its series.
    for last, thread in ((PHP_FIX, PHP_FIX), (PY_PORT, PY_PORT), ("<a736de491107c8c8f35cc797b8958fcb6b147975.1588755600.git.filipe.lains@archlinux.org>", V1_COVER),
                         (STALE, STALE)):
        result = only(month, last, thread)
        assert (result.to, result.cc) == ((LIST,), (result.envelope[1],)) and result.envelope[0] == LIST, result
    assert "every suite passed" in only(month, PHP_FIX).body


def test_a_pass_that_fixes_a_failure_the_list_heard_reaches_the_list(month):
    v2 = only(month, "<0af24b5cdfa8b25a65145ab6d9393b9dd2ce150f.1589014800.git.filipe.lains@archlinux.org>")
    assert v2.answers == V2_COVER and "every suite passed" in v2.body
    assert (v2.to, v2.cc) == ((LIST,), ("filipe@example.org",))


def test_a_plain_pass_goes_to_its_author_alone(month):
    result = only(month, AGAIN)
    assert "every suite passed" in result.body
    assert (result.envelope, result.to, result.cc) == ((KEVIN_ADDRESS,), (KEVIN_ADDRESS,), ())


def test_a_pass_a_maintainer_asked_for_goes_to_them_cc_the_list_and_the_author(month):
    mail = COMMANDS["lukas retests kevin's second"]
    ack = only(month, "lukas retests kevin's second", message_id_of(mail.data))
    assert (ack.envelope, ack.to, ack.cc) == ((LUKAS_ADDRESS,), (LUKAS_ADDRESS,), ())
    result = only(month, "lukas retests kevin's second", AGAIN)
    assert "every suite passed" in result.body
    assert (result.to, result.cc) == ((LUKAS_ADDRESS,), (LIST, KEVIN_ADDRESS))
    assert set(result.envelope) == {LUKAS_ADDRESS, LIST, KEVIN_ADDRESS}


def test_a_pass_its_author_asked_for_is_private(month):
    mail = COMMANDS["kevin retests his second"]
    ack = only(month, "kevin retests his second", message_id_of(mail.data))
    result = only(month, "kevin retests his second", AGAIN)
    for heard in (ack, result):
        assert (heard.envelope, heard.to, heard.cc) == ((KEVIN_ADDRESS,), (KEVIN_ADDRESS,), ()), heard


def test_a_pass_mailed_to_the_author_alone_is_kept_and_shown_by_status(month):
    status = only(month, "kevin asks for its status")
    assert (status.envelope, status.cc) == ((KEVIN_ADDRESS,), ())
    assert "Last test (run" in status.body and "Nothing queued." in status.body
    series = month.bot.store.series_of_mail(AGAIN)
    assert month.bot.store.latest_test_run(series.id).summary["outcome"] == "pass"
    assert not [request for request in month.bot.store.pending_test_requests() if request.series_id == series.id]


def test_the_acknowledgement_of_ignore_is_on_the_list(month):
    ack = only(month, "lukas ignores the stale patch")
    assert (ack.to, ack.cc) == ((LUKAS_ADDRESS,), (LIST,)) and set(ack.envelope) == {LUKAS_ADDRESS, LIST}
    assert "will not be tested" in ack.body


def test_a_strangers_refusal_is_private(month):
    refusal = only(month, "eve applies the php fix")
    assert (refusal.envelope, refusal.to, refusal.cc) == ((EVE_ADDRESS,), (EVE_ADDRESS,), ())
    assert "did not act on yours" in refusal.body


def test_what_the_list_heard_in_all(month):
    on_list = [heard.answers for heard in month.heard if LIST in heard.envelope]
    ignore = message_id_of(COMMANDS["lukas ignores the stale patch"].data)
    # The month's five results, Lukas's retest's result, the acknowledgement of ignore.
    assert on_list == [PHP_FIX, PY_PORT, V1_COVER, STALE, V2_COVER, AGAIN, ignore]
    # And besides: Kevin's pass, two retests' acknowledgements, Kevin's own retest's result,
    # the status, the refusal.
    assert len(month.heard) == 13
    assert not {"series tested", "replies sent"} & set(month.again), month.again
    assert RETEST not in {heard.answers for heard in month.heard}
