"""Commands in replies, end to end: real mails taken in after the series were tested, the whole
pipeline run, the acknowledgements read back from a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from commands_support import (
    DkimKeys, EVE, KEVIN, LUKAS, PHP_FIX, PY_PORT, build_tested_db, command_mail, git, session_maker,
)
from reply.outbox_support import aurweb_repo  # noqa: F401 - module-scoped: the sample repository
from reply.outbox_support import BOT, message_id_of

from patchbot.series.intake import take_in


@pytest.fixture(scope="module")
def db(aurweb_repo, tmp_path_factory) -> Path:
    return build_tested_db(aurweb_repo, tmp_path_factory.mktemp("tested"))


@pytest.fixture
def make(db, aurweb_repo, tmp_path):
    """make(**options) -> Session: a copy of the tested database and a fresh SMTP server."""
    with session_maker(db, aurweb_repo, tmp_path) as start:
        yield start


# -- one test per verb ------------------------------------------------------------------------


def test_help_lists_every_command_in_a_reply_under_the_command(make):
    s = make()
    mail = command_mail("Thanks!\n\npatchbot: help\n")
    s.send(mail)
    [answer] = s.answers_to(mail)
    assert [a.addr_spec for a in answer["To"].addresses] == ["lukas@example.org"]  # help: the sender's alone
    assert answer["Cc"] is None
    assert str(answer["References"]).split() == [PHP_FIX, message_id_of(mail.data)]
    assert str(answer["Auto-Submitted"]) == "auto-replied"
    body = s.answer_to(mail)
    assert body.startswith("Done:\n  > patchbot: help\n")
    for usage in ("patchbot: help", "patchbot: status", "patchbot: retest [suite]", "patchbot: test <ref>",
                  "patchbot: ignore", "patchbot: unignore", "patchbot: apply <branch> <vN|commit> [force]"):
        assert usage in body, body


def test_status_gives_the_state_the_last_test_and_the_queue(make):
    s = make()
    mail = command_mail("patchbot: status\n", parent=PY_PORT)
    s.send(mail)
    body = s.answer_to(mail)
    assert "v1, 1 of 1 patches (complete)." in body
    assert "Last test (run 2, tip " in body and "): This patch applied cleanly on master" in body
    assert "and was tested: 1 new failure." in body
    assert "python " in body and "Nothing queued." in body


def test_retest_queues_a_test_whose_result_is_a_new_reply_once(make):
    s = make()
    mail = command_mail("patchbot: retest\n")
    counts = s.send(mail)
    assert counts["series tested"] == 1
    assert "the series will be tested; the result follows in this thread" in s.answer_to(mail)
    [result] = s.results_in(PHP_FIX)
    assert "This patch applied cleanly on master and was tested: every suite passed.\n  Base: " in result
    keys = [row.key for row in s.bot.store.replies()]
    assert keys.count("series-1/v1/result/2") == 1
    assert "series tested" not in s.bot.run()


def test_retest_of_one_suite_runs_only_that_suite(make):
    s = make()
    mail = command_mail("patchbot: retest python\n", parent=PY_PORT)
    s.send(mail)
    assert "the python suite will be tested" in s.answer_to(mail)
    [result] = s.results_in(PY_PORT)
    assert "(not run: parity: not asked for)" in result, result
    assert "\n  python " in result and "\n  parity " not in result


def test_test_on_another_ref_tests_there_and_a_ref_that_is_not_there_is_refused(make, aurweb_repo):
    s = make()
    older = git("rev-parse", "master~1", cwd=aurweb_repo).strip()
    mail, missing = command_mail(f"patchbot: test {older}\n"), command_mail("patchbot: test no-such-branch\n")
    s.send(mail, missing)
    assert f"will be tested on {older}" in s.answer_to(mail)
    [result] = s.results_in(PHP_FIX)
    assert f"applied cleanly on {older[:12]} and" in result and f"  Base: {older[:12]}, {older}, as asked" in result, result
    assert "Refused:\n  > patchbot: test no-such-branch\n    no-such-branch is not a branch, tag or commit" in s.answer_to(missing)


def test_ignore_drops_a_waiting_test_and_refuses_retests_until_unignore(make):
    s = make()
    retest, ignore = command_mail("patchbot: retest\n", sender=KEVIN), command_mail("patchbot: ignore\n")
    counts = s.send(retest, ignore)  # the retest is queued, then the series ignored: no test runs
    assert "series tested" not in counts and s.results_in(PHP_FIX) == []
    assert s.bot.store.pending_test_requests() == []
    assert "will not be tested" in s.answer_to(ignore)
    again = command_mail("patchbot: retest\n")
    s.send(again)
    assert "this series is ignored; \"patchbot: unignore\" first" in s.answer_to(again)
    unignore = command_mail("patchbot: unignore\n")
    s.send(unignore)
    assert "no longer ignored" in s.answer_to(unignore)
    assert not s.bot.store.series(1).ignored


# -- who may ------------------------------------------------------------------------------------


def test_the_authors_own_retest_is_done_but_not_an_apply(make):
    s = make()
    mail = command_mail("patchbot: retest\npatchbot: apply master v1\n", sender=KEVIN)
    s.send(mail)
    body = s.answer_to(mail)
    assert "Done:\n  > patchbot: retest\n" in body
    assert "Refused:\n  > patchbot: apply master v1\n    only the maintainers may use it" in body
    assert len(s.results_in(PHP_FIX)) == 1


def test_a_stranger_is_refused_once_per_thread(make, tmp_path, aurweb_repo):
    bare = tmp_path / "pushed.git"
    git("clone", "-q", "--bare", str(aurweb_repo), str(bare), cwd=tmp_path)
    before = git("rev-parse", "master", cwd=bare)
    s = make(push_url=bare)
    first = command_mail("patchbot: apply master v1\n", sender=EVE)
    second = command_mail("patchbot: retest\n", sender=EVE)
    s.send(first)
    s.send(second)
    body = s.answer_to(first)
    assert "did not act on yours" in body and "only the maintainers may use it" in body
    assert s.answers_to(second) == []
    assert git("rev-parse", "master", cwd=bare) == before
    assert s.results_in(PHP_FIX) == []
    # Another thread gets its own (single) refusal.
    elsewhere = command_mail("patchbot: retest\n", sender=EVE, parent=PY_PORT)
    s.send(elsewhere)
    assert "did not act on yours" in s.answer_to(elsewhere)


# -- what is not a command ----------------------------------------------------------------------


def test_a_quoted_command_and_one_below_the_signature_do_nothing(make, tmp_path, aurweb_repo):
    bare = tmp_path / "pushed.git"
    git("clone", "-q", "--bare", str(aurweb_repo), str(bare), cwd=tmp_path)
    before = git("rev-parse", "master", cwd=bare)
    s = make(push_url=bare)
    quoted = command_mail("On Monday Lukas wrote:\n> patchbot: apply master\n\nI would not do that yet.\n")
    signed = command_mail("Looks fine.\n\n-- \nLukas\npatchbot: retest\n")
    counts = s.send(quoted, signed)
    assert s.handler.messages == [] and "series tested" not in counts
    assert git("rev-parse", "master", cwd=bare) == before
    assert s.bot.store.pending_test_requests() == []


@pytest.mark.parametrize("sender, headers", [
    (f"patchbot <{BOT}>", ()),
    (LUKAS, (("Auto-Submitted", "auto-replied"),)),
], ids=["from patchbot itself", "auto-submitted"])
def test_commands_from_patchbot_or_a_program_do_nothing(make, sender, headers):
    s = make()
    mail = command_mail("patchbot: retest\n", sender=sender, headers=headers)
    counts = s.send(mail)
    assert s.handler.messages == [] and "series tested" not in counts


# -- once, and not too often ----------------------------------------------------------------------


def test_a_command_mail_taken_in_twice_acts_once(make):
    s = make()
    mail = command_mail("patchbot: retest\n", message_id="<twice@example.org>")
    s.send(mail)
    s.send(command_mail("patchbot: retest\n", message_id="<twice@example.org>"))  # the list resends it
    s.bot.run()
    assert len(s.answers_to(mail)) == 1
    assert len(s.results_in(PHP_FIX)) == 1


def test_the_rate_limit_refuses_once_with_a_note_then_stays_quiet(make):
    s = make(max_per_hour=2)
    mails = [command_mail("patchbot: status\n") for _ in range(4)]
    s.send(mails[0], mails[1], mails[2])
    s.send(mails[3])
    assert "Done:" in s.answer_to(mails[0]) and "Done:" in s.answer_to(mails[1])
    assert "Refused:\n  > patchbot: status\n    more than 2 commands from you in an hour" in s.answer_to(mails[2])
    assert s.answers_to(mails[3]) == []


# -- apply --------------------------------------------------------------------------------------


@pytest.fixture
def bare(tmp_path, aurweb_repo) -> Path:
    """The remote to push to: a real bare repository."""
    path = tmp_path / "pushed.git"
    git("clone", "-q", "--bare", str(aurweb_repo), str(path), cwd=tmp_path)
    return path


def test_a_maintainers_apply_pushes_with_the_review_trailers_and_the_authorship_kept(make, bare):
    before = git("rev-parse", "master", cwd=bare).strip()
    s = make(push_url=bare)
    mail = command_mail("Applying, thanks.\n\npatchbot: apply master v1\n")
    s.send(mail)
    body = s.answer_to(mail)
    head = git("rev-parse", "master", cwd=bare).strip()
    assert git("rev-parse", "master~1", cwd=bare).strip() == before
    assert "Done:\n  > patchbot: apply master v1\n    applied to master and pushed (1 review trailer added):" in body
    assert f"      {head[:12]} " in body, body
    author, address, *message = git("log", "-1", "--format=%an%n%ae%n%B", "master", cwd=bare).strip().splitlines()
    assert (author, address) == ("Kevin Morris", "kevin@example.org")
    assert message[-2:] == ["Signed-off-by: Kevin Morris <kevin@example.org>",
                            "Reviewed-by: Lukas Fleischer <lukas@example.org>"], message
    assert git("log", "-1", "--format=%cn", "master", cwd=bare).strip() == "patchbot"


def test_apply_is_refused_with_new_failures_and_done_with_force(make, bare):
    before = git("rev-parse", "master", cwd=bare).strip()
    s = make(push_url=bare)
    refused = command_mail("patchbot: apply master v1\n", parent=PY_PORT)
    s.send(refused)
    assert "found 1 new failure; \"patchbot: apply master v1 force\" applies it anyway" in s.answer_to(refused)
    assert git("rev-parse", "master", cwd=bare).strip() == before
    forced = command_mail("patchbot: apply master v1 force\n", parent=PY_PORT)
    s.send(forced)
    assert "applied to master and pushed (0 review trailers added)" in s.answer_to(forced)
    author = git("log", "-1", "--format=%an <%ae>", "master", cwd=bare).strip()
    assert author == "Frédéric Mangano <fred@example.org>"
    assert git("rev-parse", "master~1", cwd=bare).strip() == before


def test_apply_is_refused_when_the_last_test_could_not_judge_and_done_with_force(make, bare):
    """A run the machine failed (kept for the operator, never mailed) is no verdict to push on."""
    before = git("rev-parse", "master", cwd=bare).strip()
    s = make(push_url=bare)
    store = s.bot.store
    series = store.series(store.mail(PHP_FIX).series_id)
    tested = store.latest_test_run(series.id)
    summary = {**tested.summary, "outcome": "infra-error",
               "suites": [{**suite, "status": "infra-error", "new_failures": []} for suite in tested.summary["suites"]]}
    with store.transaction():
        store.add_test_run(series.id, tested.started_at, summary, tested.tip)
    refused = command_mail("patchbot: apply master v1\n")
    s.send(refused)
    assert "could not judge it: " in s.answer_to(refused)
    assert "\"patchbot: apply master v1 force\" applies it anyway" in s.answer_to(refused)
    assert git("rev-parse", "master", cwd=bare).strip() == before
    forced = command_mail("patchbot: apply master v1 force\n")
    s.send(forced)
    assert "applied to master and pushed" in s.answer_to(forced)


# -- DKIM ---------------------------------------------------------------------------------------


def test_with_require_dkim_only_a_signed_command_counts(make, tmp_path, monkeypatch):
    keys = DkimKeys(tmp_path, ("example.org",))
    keys.serve(monkeypatch)
    s = make(require_dkim=True)
    forged = command_mail("patchbot: retest\n")
    s.send(forged)
    body = s.answer_to(forged)
    assert "did not act on yours" in body and "no DKIM signature of this mail verifies for example.org" in body
    unsigned_again = command_mail("patchbot: retest\n")
    s.send(unsigned_again)
    assert s.answers_to(unsigned_again) == [] and s.results_in(PHP_FIX) == []
    signed = keys.sign(command_mail("patchbot: retest\n"), "example.org")
    s.send(signed)
    assert "Done:\n  > patchbot: retest\n" in s.answer_to(signed)
    assert len(s.results_in(PHP_FIX)) == 1


def test_a_command_mail_whose_handler_died_is_acknowledged_as_interrupted_not_run_again(make):
    """A process claimed the mail, then died before storing what came of it (an apply may
    have pushed): the next pass says so in the thread and does not act a second time."""
    s = make()
    mail = command_mail("patchbot: retest\n", message_id="<died@example.org>")
    take_in(s.bot.store, mail)
    store = s.bot.store
    record = store.mail("<died@example.org>")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no process has any more
    with store.transaction():
        assert store.claim_command_mail(record.id, record.series_id, "lukas@example.org", 1,
                                        f"{socket.gethostname()}:{dead.pid}")
    counts = s.bot.run()
    assert counts.get("commands interrupted") == 1, counts
    [answer] = s.answers_to(mail)
    assert "patchbot stopped while it was acting on this mail" in s.answer_to(mail), s.answer_to(mail)
    assert len(s.results_in(PHP_FIX)) == 0  # the retest was not queued behind anyone's back
    s.bot.run()
    assert len(s.answers_to(mail)) == 1
