"""The words of a result reply, for each outcome it must handle, and the safety of its headers.

The inputs are built directly, as a test run leaves them: a TestRun made of SuiteResults (with a
TestReport read by patchbot from a real pytest JUnit file where a traceback matters), compared
by patchbot.testing.verdict.compare, summarised by TestRun.summary() and kept as a StoredTestRun.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from patchbot.testing.apply import Applied, BaseChoice, Conflict
from patchbot.config.records import Config, MailConfig, SuiteConfig
from patchbot.testing.executors.protocol import SuiteRun
from patchbot.series.intake import Status, take_in
from patchbot.reply.compose import compose
from patchbot.reply.outbox import enqueue
from patchbot.text.render import render
from patchbot.reply.report import Reply, failure_excerpt, reply_subject, result_context, result_reply
from patchbot.testing.verdict import SuiteResult, compare
from patchbot.sources import RawMail
from patchbot.store.records import PatchSlot, SeriesRecord, StoredTestRun
from patchbot.testing.plan import SuitePlan
from patchbot.testing.reports import Outcome, TestCase, TestReport, parse_junit
from patchbot.testing.run import TestRun

BASE = "f27858c12236201bbb193469c3304a729a07e81c"
HEAD = "b6c07875a2c98c17caaa1d827fb3332aee52957c"
LIST = "aur-dev@lists.archlinux.org"
STARTED = datetime(2020, 5, 5, 12, 0, tzinfo=timezone.utc)
CONFIG = Config(mail=MailConfig(sender="patchbot <patchbot@patchbot.example.org>", list_address=LIST,
                                message_id_domain="patchbot.example.org"))
PYTEST = "python3 -m pytest -q test/python --junitxml=test-results/python.xml"
COMMANDS = {"php": "php test/php/run.php", "python": PYTEST, "parity": "python3 -m pytest -q test/parity"}
STACKS = {"php": ("php",), "python": ("python",), "parity": ("php", "python")}

# A test file whose failures pytest reports as it would for the sample project's suites.
FAILING_TESTS = '''
def answer(kind):
    return {"version": 5, "type": kind, "resultcount": 1, "results": ["python-fixture"]}


def check_shape(reply):
    assert isinstance(reply, list), "suggest answers a bare list"


def test_count():
    names = ["a", "b", "c"]
    assert len(names) == 4


def test_suggest_shape():
    for line in range(30):
        print("noise line", line)
    reply = answer("suggest")
    check_shape(reply)


def test_long_diff():
    expected = [f"package-{n}" for n in range(40)]
    got = [f"package-{n}" for n in range(1, 41)]
    assert got == expected


def test_passes():
    assert True
'''


@pytest.fixture(scope="module")
def pytest_cases(tmp_path_factory) -> dict[str, TestCase]:
    """Real pytest failures (-vv, as a suite in CI shows them), read by patchbot's JUnit reader."""
    folder = tmp_path_factory.mktemp("pytest-run")
    (folder / "test_rpc.py").write_text(FAILING_TESTS)
    result = subprocess.run([sys.executable, "-m", "pytest", "-vv", "-p", "no:cacheprovider", "test_rpc.py",
                             "--junitxml=report.xml"], cwd=folder, capture_output=True, text=True,
                            env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stdout + result.stderr
    report = parse_junit((folder / "report.xml").read_bytes())
    cases = {case.name.rsplit("::", 1)[1]: case for case in report.cases}
    assert cases["test_count"].outcome is Outcome.FAIL and cases["test_passes"].outcome is Outcome.PASS
    return cases


# -- building the inputs --------------------------------------------------------------------------


def make_series(version: int = 1, total: int = 1, supersedes: int | None = None) -> SeriesRecord:
    return SeriesRecord(
        id=7, title="rpc: port search by maintainer to Python", normalised_title="rpc: port search by maintainer to python",
        author="fred@example.org", author_name="Frédéric Mangano", version=version, total=total, cover_mail_id=None,
        cover_message_id=None, date=STARTED, supersedes_id=supersedes, obsolete=False,
        patches=tuple(PatchSlot(n, 100 + n, f"<p{n}@example.org>", f"[PATCH {n}/{total}] part {n}", f"part {n}", False)
                      for n in range(1, total + 1)),
    )


def applied(behind: int = 0, ok: bool = True, **failure) -> Applied:
    return Applied(ok=ok, base=BaseChoice("master", "the default branch master", "master"), base_commit=BASE,
                   worktree=None, head=HEAD if ok else None, base_behind_tip=behind, **failure)


def report(*cases: tuple[str, Outcome] | TestCase) -> TestReport:
    return TestReport(tuple(case if isinstance(case, TestCase) else TestCase(case[0], case[1], "", "") for case in cases))


def passing(*names: str) -> list[tuple[str, Outcome]]:
    return [(name, Outcome.PASS) for name in names]


def stored_run(series: SeriesRecord, suites: dict[str, tuple[SuiteResult, SuiteResult | None, SuiteResult | None]],
               done: Applied | None = None, left_out=(("php", "the series touches none of its stacks"),),
               run_id: int = 42) -> StoredTestRun:
    """suites: name -> (tip, base, previous version's tip); what test_series would store."""
    done = done or applied()
    tip = [result for result, _, _ in suites.values()]
    base = {name: result for name, (_, result, _) in suites.items() if result is not None}
    previous = {name: result for name, (_, _, result) in suites.items() if result is not None}
    if done.ok:
        plan = SuitePlan(frozenset(stack for name in suites for stack in STACKS[name]),
                         tuple(SuiteConfig(name, COMMANDS[name], STACKS[name]) for name in suites), tuple(left_out))
        runs = tuple(SuiteRun(result, Path(f"/work/logs/series-7/{result.suite}-tip.log"), COMMANDS[result.suite], 1)
                     for result in tip)
        run = TestRun(series, done, plan, runs, base, compare(tip, base, previous), STARTED)
    else:
        run = TestRun(series, done, None, (), {}, None, STARTED)
    summary = json.loads(json.dumps(run.summary()))  # as the store keeps it
    return StoredTestRun(run_id, series.id, STARTED, STARTED, summary, tuple(tip))


def reply_text(series: SeriesRecord, run: StoredTestRun, config: Config = CONFIG) -> str:
    return render("reply/series-result.txt", **result_context(config, series, run))


def headline_of(text: str) -> str:
    """The reply's first sentence, its wrapped lines joined."""
    return text.split("\n  Base: ", 1)[0].replace("\n  ", " ")


def excerpt_of(text: str, title: str, test: str | None = None) -> str:
    """The excerpt's lines (indented by 4) under `== title ==` and the test's name."""
    lines = text.splitlines()
    start = lines.index(f"== {title} ==") + 1
    if test is not None:
        assert lines[start] == f"  {test}", lines[start]
    start = lines.index("", start) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return "\n".join(lines[start:end])


def python_result(outcome: Outcome, *cases, detail: str = "") -> SuiteResult:
    return SuiteResult("python", outcome, report(*cases), 1.04, detail)


# -- each outcome -----------------------------------------------------------------------------------


def test_applied_and_every_suite_passed():
    series = make_series()
    php = SuiteResult("php", Outcome.PASS, report(*passing(*(f"rpc {n}" for n in range(12)))), 0.21)
    parity = SuiteResult("parity", Outcome.PASS, report(*passing(*(f"test_same[{n}]" for n in range(20))),
                                                        ("test_same[x]", Outcome.SKIPPED), ("test_same[y]", Outcome.SKIPPED)), 1.1)
    run = stored_run(series, {"php": (php, php, None), "parity": (parity, parity, None)},
                     left_out=(("python", "the series touches none of its stacks"),))
    text = reply_text(series, run)
    assert text.splitlines()[:2] == ["This patch applied cleanly on master and was tested: every suite passed.",
                                     "  Base: f27858c12236, the default branch master"]
    assert re.search(r"^  php +PASS +12 passed +0\.2 s$", text, re.M), text
    assert re.search(r"^  parity +PASS +20 passed \(2 skipped\) +1\.1 s$", text, re.M), text
    assert "  (not run: python: the series touches none of its stacks)" in text
    assert "Full logs: patchbot log 42" in text
    for absent in ("==", "To reproduce", "new failure", "Compared with", "Note:", "did not apply"):
        assert absent not in text, absent


def test_a_new_failure_shows_the_failing_assertion_not_the_logs_tail(pytest_cases):
    series = make_series()
    names = ["test_rpc::test_count", "test_rpc::test_passes"]
    tip = python_result(Outcome.FAIL, replace(pytest_cases["test_count"], name=names[0]),
                        (names[1], Outcome.PASS), detail="exit code 1")
    base = python_result(Outcome.PASS, *passing(*names))
    text = reply_text(series, stored_run(series, {"python": (tip, base, None)}))
    assert headline_of(text).endswith("and was tested: 1 new failure.")
    assert re.search(r"^  python +FAIL +1 new failure of 2 +1\.0 s$", text, re.M), text
    excerpt = excerpt_of(text, "python: new failure; passes on master", "test_rpc.py::test_count")
    assert "    >       assert len(names) == 4" in excerpt.splitlines()
    assert "    E       AssertionError: assert 3 == 4" in excerpt.splitlines()
    assert "exit code 1" not in excerpt and "short test summary" not in text and "1 failed" not in text
    assert text.split("To reproduce:\n", 1)[1].split("\n\n")[0].splitlines() == [
        "  git checkout f27858c12236", "  patchbot series mbox 7 > series.mbox   # on the test machine",
        "  git am -3 --patch-format=mboxrd series.mbox", "  # the suite python, as patchbot ran it", f"  {PYTEST}",
        "  # the new failure alone, with its output", "  python3 -m pytest test_rpc.py::test_count"]


def test_a_failure_in_a_helper_shows_the_call_and_the_assertion(pytest_cases):
    series = make_series()
    case = replace(pytest_cases["test_suggest_shape"], name="test_rpc::test_suggest_shape")
    tip = python_result(Outcome.FAIL, case, detail="exit code 1")
    base = python_result(Outcome.PASS, *passing(case.name))
    excerpt = excerpt_of(reply_text(series, stored_run(series, {"python": (tip, base, None)})),
                         "python: new failure; passes on master", "test_rpc.py::test_suggest_shape")
    lines = excerpt.splitlines()
    assert "    >       check_shape(reply)" in lines
    assert '    >       assert isinstance(reply, list), "suggest answers a bare list"' in lines
    assert "    E       AssertionError: suggest answers a bare list" in lines
    assert "noise line" not in excerpt and "for line in range(30)" not in excerpt
    assert len(lines) <= 20


def test_a_long_assertion_diff_still_shows_the_assertion(pytest_cases):
    excerpt = failure_excerpt(pytest_cases["test_long_diff"].detail)
    lines = excerpt.splitlines()
    assert ">       assert got == expected" in lines, excerpt
    assert any(line.startswith("E       AssertionError: assert [") for line in lines), excerpt


def test_only_failures_that_already_fail_on_the_base():
    series = make_series()
    names = ["t::test_upstream_broke_this", "t::test_also_broken"] + [f"t::test_{n}" for n in range(16)]
    tip = python_result(Outcome.FAIL, *[(name, Outcome.FAIL) for name in names[:2]], *passing(*names[2:]),
                        detail="exit code 1")
    base = python_result(Outcome.FAIL, *[(name, Outcome.FAIL) for name in names[:2]], *passing(*names[2:]))
    text = reply_text(series, stored_run(series, {"python": (tip, base, None)}))
    assert headline_of(text).endswith(
        "and was tested: no new failures; 2 tests that already fail on master fail here too.")
    assert re.search(r"^  python +PASS +16 passed, 2 failing before too +1\.0 s$", text, re.M), text
    assert text.splitlines()[0].startswith("This patch applied cleanly on master and was tested:")
    assert "==" not in text and "To reproduce" not in text and not re.search(r"\d new failure", text)


def test_one_preexisting_failure_reads_in_the_singular():
    series = make_series()
    tip = python_result(Outcome.FAIL, ("t::test_upstream_broke_this", Outcome.FAIL), *passing("t::test_ok"))
    base = python_result(Outcome.FAIL, ("t::test_upstream_broke_this", Outcome.FAIL), *passing("t::test_ok"))
    text = reply_text(series, stored_run(series, {"python": (tip, base, None)}))
    assert headline_of(text).endswith("no new failures; 1 test that already fails on master fails here too.")


GIT_AM_SAID = (
    "Patch failed at 0002 rpc: answer type=suggest from Python\n"
    "When you have resolved this problem, run \"git am --continue\".\n"
    "If you prefer to skip this patch, run \"git am --skip\" instead.\n"
    "To restore the original branch and stop patching, run \"git am --abort\".\n"
    "error: Failed to merge in the changes.\n"
    "Checking patch aurweb/rpc.py...\n"
    "error: while searching for:\n"
    "    if rtype == \"\":\n"
    "error: patch failed: aurweb/rpc.py:12\n"
    "error: aurweb/rpc.py: patch does not apply\n"
    "hint: Use 'git am --show-current-patch=diff' to see the failed patch"
)


def test_a_series_that_does_not_apply_names_the_patch_the_files_and_the_line():
    series = make_series(total=3)
    done = applied(ok=False, failed_patch=2, failed_total=3, failed_subject="[PATCH 2/3] rpc: answer type=suggest",
                   conflicts=(Conflict("aurweb/rpc.py", 12), Conflict("web/lib/rpc.php", None)), detail=GIT_AM_SAID)
    text = reply_text(series, stored_run(series, {}, done=done, left_out=()))
    assert headline_of(text) == "v1 of this series did not apply on master: patch 2/3 failed."
    assert "It failed in:\n  aurweb/rpc.py, the hunk at line 12\n  web/lib/rpc.php\n" in text
    said = text.split("git am said:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "    error: patch failed: aurweb/rpc.py:12" in said
    assert "    error: aurweb/rpc.py: patch does not apply" in said
    for advice in ("When you have resolved", "If you prefer", "To restore", "Patch failed at", "hint:"):
        assert advice not in text, advice
    assert ("To reproduce:\n  git checkout f27858c12236\n  patchbot series mbox 7 > series.mbox   # on the test machine\n"
            "  git am -3 --patch-format=mboxrd series.mbox\n\n") in text
    assert "PASS" not in text and "FAIL" not in text and "applied cleanly" not in text


def test_a_series_whose_prerequisite_does_not_apply_says_so():
    series = make_series()
    done = applied(ok=False, failed_patch=1, failed_total=2, prerequisite_failed=True, detail="error: patch failed")
    text = reply_text(series, stored_run(series, {}, done=done, left_out=()))
    assert headline_of(text).endswith("did not apply on master: the series it is based on failed.")


def test_an_infrastructure_failure_is_not_the_patchs_fault():
    series = make_series()
    php = SuiteResult("php", Outcome.INFRA_ERROR, None, 0.0, "sandbox: bwrap: Creating new namespace failed")
    parity = SuiteResult("parity", Outcome.PASS, report(*passing("t::a", "t::b")), 1.0)
    text = reply_text(series, stored_run(series, {"php": (php, None, None), "parity": (parity, parity, None)}, left_out=()))
    headline = headline_of(text)
    assert headline.endswith("was tested: php could not be run (a problem of the test machine, not of the patch).")
    # The sandbox's own words are the operator's (they may name paths and process ids).
    assert re.search(r"^  php +ERROR +could not run; the operator's log says why +0\.0 s$", text, re.M), text
    assert "bwrap" not in text and "namespace" not in text
    assert "new failure" not in text and "==" not in text


def test_a_suite_broken_on_the_base_says_it_cannot_judge_never_pass():
    """Issue 12: with an empty venv nearly every test failed at base and tip, and the reply said
    "PASS 8 passed, 101 failing before too" for a patch that broke a test on purpose."""
    series = make_series()
    broken = [(f"t::test_{number}", Outcome.FAIL) for number in range(101)]
    tip = python_result(Outcome.FAIL, *broken, *passing("t::ok_1"))
    base = python_result(Outcome.FAIL, *broken, *passing("t::ok_1"))
    text = reply_text(series, stored_run(series, {"python": (tip, base, None)}))
    assert "PASS" not in text and "every suite passed" not in text
    assert re.search(r"^  python +ERROR +cannot judge: the suite is broken on the base +1\.0 s\n +\(101 failing, 1 passing there\)",
                     text, re.M), text
    assert headline_of(text).endswith("python cannot judge it (a problem of the suite on the base, not of the patch).")


def test_a_suite_that_hits_its_time_limit_says_so():
    series = make_series()
    tip = SuiteResult("python", Outcome.TIMEOUT, None, 60.0, "killed after 60 s wall time")
    base = python_result(Outcome.PASS, *passing("t::a"))
    text = reply_text(series, stored_run(series, {"python": (tip, base, None)}))
    assert headline_of(text).endswith("was tested: python hit the time limit.")
    assert re.search(r"^  python +TIMEOUT +killed after 60 s wall time +60\.0 s$", text, re.M), text
    assert "new failure" not in text and "==" not in text
    assert f"  {PYTEST}" in text.split("To reproduce:", 1)[1]


def test_compared_with_the_previous_version():
    series = make_series(version=3, total=3, supersedes=6)
    names = ["t::test_a", "t::test_b", "t::test_c", "t::test_d"]
    previous = python_result(Outcome.FAIL, (names[0], Outcome.FAIL), (names[1], Outcome.FAIL), *passing(names[2], names[3]))
    tip = python_result(Outcome.FAIL, *passing(names[0]), (names[1], Outcome.FAIL), (names[2], Outcome.FAIL),
                        *passing(names[3]))
    base = python_result(Outcome.PASS, *passing(*names))
    text = reply_text(series, stored_run(series, {"python": (tip, base, previous)}))
    assert headline_of(text).startswith("v3 of this series applied cleanly")
    assert ("\nCompared with the previous version: 1 fixed, 1 still failing, 1 new failure.\n"
            "  fixed:          t::test_a\n"
            "  still failing:  t::test_b\n"
            "  new failure:    t::test_c\n") in text


@pytest.mark.parametrize("version, supersedes", [(2, 6), (1, None)])
def test_no_comparison_line_when_nothing_changed_or_there_is_no_previous_version(version, supersedes):
    series = make_series(version=version, supersedes=supersedes)
    result = python_result(Outcome.PASS, *passing("t::test_a"))
    text = reply_text(series, stored_run(series, {"python": (result, result, result if supersedes else None)}))
    assert "Compared with" not in text


@pytest.mark.parametrize("behind, note", [
    (3, 'Note: this base is 3 commits behind master; "patchbot: test master" tests on its tip.'),
    (1, 'Note: this base is 1 commit behind master; "patchbot: test master" tests on its tip.'),
    (0, None),
])
def test_a_base_behind_its_branch_tip_is_noted(behind, note):
    series = make_series()
    result = python_result(Outcome.PASS, *passing("t::test_a"))
    text = reply_text(series, stored_run(series, {"python": (result, result, None)}, done=applied(behind=behind)))
    if note:
        assert " ".join(text.split("\n\n")[0].splitlines()[2:]).replace("   ", " ") == note
    else:
        assert "Note:" not in text


def test_log_url_puts_the_logs_of_the_suites_that_did_not_pass_in_full_logs():
    config = replace(CONFIG, reply=replace(CONFIG.reply, log_url="https://ci.example.org/logs/{run}/{suite}.log"))
    series = make_series()
    python = python_result(Outcome.FAIL, ("t::test_a", Outcome.FAIL), detail="exit code 1")
    php = SuiteResult("php", Outcome.TIMEOUT, None, 60.0, "killed after 60 s wall time")
    parity = SuiteResult("parity", Outcome.PASS, report(*passing("t::x")), 1.0)
    run = stored_run(series, {"python": (python, python_result(Outcome.PASS, *passing("t::test_a")), None),
                              "php": (php, None, None), "parity": (parity, parity, None)}, left_out=(), run_id=7)
    text = reply_text(series, run, config)
    assert ("\nFull logs:\n  https://ci.example.org/logs/7/python.log\n"
            "  https://ci.example.org/logs/7/php.log\nReply with") in text
    assert "patchbot log 7" not in text


def test_a_log_url_without_suite_is_given_once():
    config = replace(CONFIG, reply=replace(CONFIG.reply, log_url="https://ci.example.org/runs/{run}"))
    series = make_series()
    python = python_result(Outcome.FAIL, ("t::test_a", Outcome.FAIL))
    php = SuiteResult("php", Outcome.TIMEOUT, None, 60.0, "killed after 60 s wall time")
    run = stored_run(series, {"python": (python, python_result(Outcome.PASS, *passing("t::test_a")), None),
                              "php": (php, None, None)}, left_out=(), run_id=7)
    text = reply_text(series, run, config)
    assert text.count("https://ci.example.org/runs/7") == 1 and "\nFull logs:\n  https://ci.example.org/runs/7\n" in text


def test_a_new_test_that_fails_is_not_said_to_pass_on_the_base():
    series = make_series()
    tip = python_result(Outcome.FAIL, ("t::test_added_by_the_series", Outcome.FAIL), *passing("t::test_old"))
    base = python_result(Outcome.PASS, *passing("t::test_old"))  # the base has no such test
    text = reply_text(series, stored_run(series, {"python": (tip, base, None)}))
    assert "\n== python: new failure; not on master ==\n  t::test_added_by_the_series\n" in text, text


# -- headers: threading, subject, header safety ------------------------------------------------------

DIFF = """---
 web/lib/rpc.php | 1 +
 1 file changed, 1 insertion(+)

diff --git a/web/lib/rpc.php b/web/lib/rpc.php
index 1111111..2222222 100644
--- a/web/lib/rpc.php
+++ b/web/lib/rpc.php
@@ -1 +1,2 @@
 <?php
+// The fields come from schema/schema.sql.
-- 
2.30.0
"""


def patch_mail(sender: str, subject: str, message_id: str, extra: str = "") -> RawMail:
    text = (f"From: {sender}\nTo: {LIST}\nSubject: {subject}\nMessage-Id: {message_id}\n"
            f"Date: Mon, 04 May 2020 09:00:00 +0000\n{extra}MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=UTF-8\n\nA change.\n\n{DIFF}")
    return RawMail(text.encode(), "test")


def filed_series(store, raw: RawMail) -> SeriesRecord:
    outcome = take_in(store, raw)
    assert outcome.status is Status.FILED and outcome.kind == "patch", outcome
    return store.series(outcome.series_id)


def reply_for(store, series: SeriesRecord) -> Reply:
    result = python_result(Outcome.PASS, *passing("t::test_a"))
    return result_reply(store, CONFIG, series, stored_run(series, {"python": (result, result, None)}), 1)


def head_lines(data: bytes) -> list[bytes]:
    """The header block's fields, folded lines joined."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return re.split(rb"\r\n(?![ \t])", head)


def check_well_formed(data: bytes) -> email.message.EmailMessage:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):  # every physical line starts a field or continues one
        assert re.match(rb"^[A-Za-z-]+: |^[ \t]", line), line
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Bcc"] is None
    for name in ("From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "X-Patchbot-Series"):
        assert len(message.get_all(name) or []) == 1, name
    assert not message.defects, message.defects
    for name in ("Subject", "To", "In-Reply-To", "References", "X-Patchbot-Series"):
        assert not message[name].defects, (name, message[name].defects)
    return message


def test_compose_keeps_line_breaks_in_a_subject_and_a_name_out_of_the_headers():
    evil = "Jane\r\nBcc: evil@example.org\r\nX-Injected: yes"
    reply = Reply(key="series-9/v1/result/1", series_id=9, subject="Re: [PATCH] x\r\nBcc: evil@example.org\n\nbody?",
                  in_reply_to="<p@example.org>\r\nBcc: evil@example.org", references=("<p@example.org>",),
                  to=(LIST,), cc=(f"{evil} <jane@example.org>",), body="The text.\n", series_tag="9/v1\r\nBcc: x@y")
    _, data = compose(reply, CONFIG)
    message = check_well_formed(data)
    assert str(message["Subject"]) == "Re: [PATCH] x Bcc: evil@example.org body?"
    assert message["X-Injected"] is None
    assert message.get_content() == "The text.\n" or message.get_content().replace("\r\n", "\n") == "The text.\n"


def test_an_encoded_newline_in_a_subject_or_a_name_makes_no_header(store):
    series = filed_series(store, patch_mail("=?utf-8?q?Jane=0D=0ABcc=3A_evil=40example.org?= <jane@example.org>",
                                            "[PATCH] =?utf-8?q?x=0D=0ABcc:_evil@example.org?=", "<enc@example.org>"))
    assert "\n" not in series.title and "\n" not in series.author_name
    reply = reply_for(store, series)
    _, data = compose(reply, CONFIG)
    message = check_well_formed(data)
    assert message.get_all("Subject") == ["Re: [PATCH] x Bcc: evil@example.org"]
    assert str(message["In-Reply-To"]) == "<enc@example.org>"


@pytest.mark.parametrize("sender, name", [
    ('"Doe, Jane" <jane@example.org>', "Doe, Jane"),
    ('"Jane <evil@example.org>" <jane@example.org>', "Jane <evil@example.org>"),
    ("=?utf-8?q?Jane=0D=0ABcc=3A_evil=40example.org?= <jane@example.org>", "Jane Bcc: evil@example.org"),
], ids=["comma", "angle-brackets", "encoded-newline-and-colon"])
def test_the_author_is_the_one_cc_and_envelope_recipient_whatever_the_name(store, sender, name):
    series = filed_series(store, patch_mail(sender, "[PATCH] rpc: a change", "<named@example.org>"))
    assert (series.author, series.author_name) == ("jane@example.org", name)
    reply = reply_for(store, series)
    _, data = compose(reply, CONFIG)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert [(a.display_name, a.addr_spec) for a in message["Cc"].addresses] == [(name, "jane@example.org")]
    assert enqueue(store, CONFIG, reply)
    assert store.replies()[0].recipients == (LIST, "jane@example.org")


def test_the_reply_continues_the_thread_of_the_patch(store):
    series = filed_series(store, patch_mail(
        "Jane Doe <jane@example.org>", "[PATCH] rpc: a change", "<p3@example.org>",
        "In-Reply-To: <p2@example.org>\nReferences: <p0@example.org>\n <p1@example.org>\n\t<p2@example.org>\n"))
    reply = reply_for(store, series)
    assert (reply.in_reply_to, reply.references) == ("<p3@example.org>", ("<p0@example.org>", "<p1@example.org>",
                                                                           "<p2@example.org>", "<p3@example.org>"))
    assert reply.subject == "Re: [PATCH] rpc: a change"
    assert (reply.to, reply.cc) == ((LIST,), ("Jane Doe <jane@example.org>",))
    assert reply.key == f"series-{series.id}/v1/result/1" and reply.series_tag == f"{series.id}/v1"


def test_a_parent_with_in_reply_to_only_still_gives_full_references(store):
    series = filed_series(store, patch_mail("Jane Doe <jane@example.org>", "[PATCH] rpc: a change", "<p3@example.org>",
                                            "In-Reply-To: <p2@example.org>\n"))
    assert reply_for(store, series).references == ("<p2@example.org>", "<p3@example.org>")


@pytest.mark.parametrize("original, subject", [
    ("[PATCH 0/3] Port type=suggest", "Re: [PATCH 0/3] Port type=suggest"),
    ("Re: [PATCH] rpc: a change", "Re: [PATCH] rpc: a change"),
    ("RE: [PATCH] rpc: a change", "RE: [PATCH] rpc: a change"),
])
def test_the_subject_gets_one_re(original, subject):
    assert reply_subject(original) == subject
