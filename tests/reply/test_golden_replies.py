"""Golden replies: every kind of reply patchbot mails to a list, rendered from real aurweb-era runs.

Each test builds a reply the way the pipeline does (reports read by patchbot's own readers,
compared by results.compare, summarised by TestRun.summary, rendered by patchbot.reply.report with the
real deploy/aurweb.toml) and compares it with golden/<name>.txt beside this file. Those files are
the review: read them as the maintainer on aur-dev who gets the mail would.

To regenerate them after a deliberate change of wording or layout:

    PATCHBOT_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/reply/test_golden_replies.py

then read `git diff tests/reply/golden/` before committing; the run fails once more to say
which files it wrote.

The data in data/ are real outputs (2026-11-30, this machine), not aurweb code:
- aurweb-2020-t2500-notify-*.junit.xml: aurweb c4f4ac51 (2020-08-27) with a patch that reworded
  the reset key mail (v1) and also the welcome mail (v2); sharness t2500-notify.t run from test/
  as deploy/aurweb.toml runs it (`prove -e bash --formatter TAP::Formatter::JUnit t*.t :: -v`),
  with the 2020 venv; "base" is c4f4ac51 itself; "no-python" is the same run without the venv
  on PATH (every test fails, at the base too).
- aurweb-2020-t2500-notify-v1-tip.tap: `bash t2500-notify.t -v` at v1, the plain TAP stream.
- aurweb-2021-test_util-*.junit.xml: aurweb 5e6f0cb8 (pu, 2021-09-04) with `to_qs` losing
  doseq=True; `python -m pytest -q -p no:cacheprovider test/test_util.py --junitxml=...` set up
  as the pytest suite's command does (SQLite), in the pu venv; "base" is 5e6f0cb8.
- aurweb-2020-notify-git-am-conflict.json: what patchbot.testing.apply.apply_series said applying v1 on a
  commit that reworded the same sentence another way (git am -3, then git apply --check -v).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from patchbot.testing.apply import Applied, BaseChoice, Conflict
from patchbot.config.load import load_config
from patchbot.config.records import Config
from patchbot.testing.executors.protocol import SuiteRun
from patchbot.text.render import render
from patchbot.reply.report import LINE_WIDTH, MAX_REPLY_BYTES, result_body, result_context, superseded_body
from patchbot.testing.verdict import SuiteResult, compare
from patchbot.store.records import PatchSlot, SeriesRecord, StoredTestRun
from patchbot.testing.plan import SuitePlan
from patchbot.testing.reports import Outcome, parse_junit
from patchbot.testing.run import TestRun

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
REGENERATE = os.environ.get("PATCHBOT_REGENERATE_GOLDEN") == "1"
# A copy of deploy/aurweb.toml (its commit of 2026-11-30): the goldens show its commands, and must
# not change whenever the deployment's commands do.
AURWEB = load_config(DATA / "aurweb-config.toml")
BASE_2020 = "c4f4ac510be1898e6969d13dd4f37c0a3f807aff"  # aurweb c4f4ac51, 2020-08-27
BASE_2021 = "5e6f0cb8d71266d8ba29ea24db267914b1e33973"  # aurweb 5e6f0cb8, pu, 2021-09-04
STARTED = datetime(2020, 8, 28, 9, 30, tzinfo=timezone.utc)
# Message-IDs as `git format-patch --thread` makes them for an @archlinux.org sender (81 characters).
MESSAGE_ID = "<20200828093012.613364b7a0c94e2f8d1c5a7e9b3f2d1c-1-frederic.mangano@archlinux.org>"


def series(version: int = 1, series_id: int = 7, supersedes: int | None = None,
           title: str = "notify: punctuation in the reset key mail") -> SeriesRecord:
    return SeriesRecord(
        id=series_id, title=title, normalised_title=title, author="frederic.mangano@archlinux.org",
        author_name="Frédéric Mangano", version=version, total=1, cover_mail_id=None, cover_message_id=None,
        date=STARTED, supersedes_id=supersedes, obsolete=False,
        patches=(PatchSlot(1, 100 + series_id, MESSAGE_ID.replace("-1-", f"-{version}-"),
                           f"[PATCH{f' v{version}' if version > 1 else ''}] {title}", title, False),),
    )


def junit(name: str) -> object:
    return parse_junit((DATA / name).read_bytes())


def applied(base_commit: str = BASE_2020, ok: bool = True, **failure) -> Applied:
    return Applied(ok=ok, base=BaseChoice("master", "the default branch master", "master"), base_commit=base_commit,
                   worktree=None, head="68701f26d01ab2d7bf63763874a2aaec0b6d1ebd" if ok else None, **failure)


def stored(record: SeriesRecord, tip: list[SuiteResult], base: dict[str, SuiteResult],
           previous: dict[str, SuiteResult] | None = None, done: Applied | None = None,
           left_out: tuple[tuple[str, str], ...] = (), run_id: int = 12) -> StoredTestRun:
    """A run as test_series keeps it, with the suites' commands from deploy/aurweb.toml."""
    done = done or applied()
    if done.ok:
        suites = tuple(AURWEB.suites[result.suite] for result in tip)
        plan = SuitePlan(frozenset({"python"}), suites, left_out)
        runs = tuple(SuiteRun(result, None, AURWEB.suites[result.suite].command, 1) for result in tip)
        run = TestRun(record, done, plan, runs, base, compare(tip, base, previous or {}), STARTED)
    else:
        run = TestRun(record, done, None, (), {}, None, STARTED)
    summary = json.loads(json.dumps(run.summary()))  # as the store keeps it
    return StoredTestRun(run_id, record.id, STARTED, STARTED, summary, tuple(tip))


def body(record: SeriesRecord, run: StoredTestRun, config: Config = AURWEB) -> str:
    return result_body(config, record, run)


def matches_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if REGENERATE:
        path.write_text(text)
        pytest.fail(f"wrote {path.relative_to(HERE)}: read it, then run again without PATCHBOT_REGENERATE_GOLDEN")
    assert path.exists(), f"no {path.relative_to(HERE)}: run with PATCHBOT_REGENERATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{name} differs from its golden file"


def sharness(report_name: str, outcome: Outcome = Outcome.FAIL, duration: float = 3.3) -> SuiteResult:
    return SuiteResult("sharness", outcome, junit(report_name), duration, "exit code 1" if outcome is Outcome.FAIL else "")


@pytest.fixture(scope="module")
def sharness_base() -> SuiteResult:
    return SuiteResult("sharness", Outcome.PASS, junit("aurweb-2020-t2500-notify-base.junit.xml"), 3.2)


# -- each kind of reply -------------------------------------------------------------------------


def test_sharness_test_cmp_failure(sharness_base):
    """The diff test_cmp printed, the test named with its script, the suite run from test/."""
    record = series()
    tip = sharness("aurweb-2020-t2500-notify-v1-tip.junit.xml")
    run = stored(record, [tip], {"sharness": sharness_base},
                 left_out=(("php-lint", "the series touches none of its stacks"),
                           ("pytest", "the tree has no test/test_exceptions.py"),
                           ("smoke", "the tree has no aurweb/spawn.py")))
    text = body(record, run)
    assert "t2500-notify.t #2: Test subject and body of reset key notifications." in text
    assert "^I" not in text and "\t" not in text and "expecting success" not in text
    matches_golden("sharness-test-cmp-failure", text)


def test_sharness_without_v_says_it_printed_nothing_but_its_source(sharness_base):
    """A suite run without -v (sharness then echoes only the test's source): no code is quoted."""
    record = series()
    tip = sharness("aurweb-2020-t2500-notify-v1-tip-not-verbose.junit.xml")
    text = body(record, stored(record, [tip], {"sharness": sharness_base}))
    excerpt = text.split("t2500-notify.t #2: Test subject and body of reset key notifications.\n\n", 1)[1]
    assert excerpt.startswith("    (the test printed nothing but its own source; the full log has the rest)\n"), excerpt
    assert "test_cmp" not in text.split("To reproduce:")[0]


def test_pytest_assertion():
    """pytest's `>` and `E` lines; the logs and the series by URL where the service publishes them."""
    config = replace(AURWEB, reply=replace(AURWEB.reply, log_url="https://patchbot.archlinux.org/logs/{run}/{suite}.log",
                                           mbox_url="https://patchbot.archlinux.org/series/{series}/v{version}.mbox"))
    record = series(series_id=31, title="util: build query strings with urlencode")
    tip = SuiteResult("pytest", Outcome.FAIL, junit("aurweb-2021-test_util-tip.junit.xml"), 0.7, "exit code 1")
    base = SuiteResult("pytest", Outcome.PASS, junit("aurweb-2021-test_util-base.junit.xml"), 0.7)
    run = stored(record, [tip], {"pytest": base}, done=applied(BASE_2021), run_id=57)
    text = body(record, run, config)
    assert "test/test_util.py::test_to_qs" in text
    assert "    >       assert qs == \"a=b&c=1&c=2&c=3\"" in text.splitlines()
    matches_golden("pytest-assertion", text)


def test_apply_failure():
    """The patch, the file and line, what git said; nothing to run."""
    said = json.loads((DATA / "aurweb-2020-notify-git-am-conflict.json").read_text())
    record = series()
    done = applied(said["base_commit"], ok=False, failed_patch=1, failed_total=1,
                   failed_subject="[PATCH] notify: punctuation in the reset key mail",
                   conflicts=tuple(Conflict(path, line) for path, line in said["conflicts"]), detail=said["detail"])
    text = body(record, stored(record, [], {}, done=done))
    assert "did not apply" in text and "aurweb/scripts/notify.py, the hunk at line 143" in text
    matches_golden("apply-failure", text)


def test_cannot_judge_a_suite_broken_on_the_base():
    """Every test fails at the base too (no Python on PATH): no verdict on the patch."""
    record = series()
    broken = sharness("aurweb-2020-t2500-notify-no-python.junit.xml", duration=2.1)
    run = stored(record, [broken], {"sharness": broken})
    text = body(record, run)
    assert "cannot judge" in text and "PASS" not in text and "new failure" not in text
    matches_golden("cannot-judge", text)


def test_could_not_run(sharness_base):
    """A suite the machine could not start is the machine's problem, in a fixed phrase."""
    record = series(title="spawn: serve the RPC from FastAPI")
    smoke = SuiteResult("smoke", Outcome.INFRA_ERROR, None, 0.0,
                        "sandbox: bwrap: Creating new namespace failed: No space left on device (pid 4242)")
    run = stored(record, [sharness_base, smoke], {"sharness": sharness_base})
    text = body(record, run)
    assert "bwrap" not in text and "4242" not in text
    matches_golden("could-not-run", text)


def test_v2_compared_with_v1(sharness_base):
    """One test a line, fixed / still failing / new, without doubled punctuation; b4 fetches it."""
    config = replace(AURWEB, reply=replace(AURWEB.reply, lore_url="https://lore.kernel.org/aur-dev/"))
    v1 = sharness("aurweb-2020-t2500-notify-v1-tip.junit.xml")
    v2 = sharness("aurweb-2020-t2500-notify-v2-tip.junit.xml", duration=3.4)
    record = series(version=2, series_id=8, supersedes=7,
                    title="notify: punctuation in the reset key mail; shorter welcome")
    text = body(record, stored(record, [v2], {"sharness": sharness_base}, previous={"sharness": v1}), config)
    compared = text.split("Compared with", 1)[1].split("\n\n", 1)[0]
    assert ".;" not in compared and "still failing:  t2500-notify.t #2: Test subject" in compared
    assert "b4 am -o - " in text
    matches_golden("v2-compared-with-v1", text)


def test_superseded():
    newer = series(version=2, series_id=8, title="notify: punctuation in the reset key mail; shorter welcome")
    text = superseded_body(series(), newer)
    matches_golden("superseded", text)


def test_cut_short(sharness_base):
    """A reply over MAX_REPLY_BYTES (only a configuration with very many suites gets there): its
    end, where the cut is said. The golden file holds the last lines only."""
    suites = {f"suite{n:04d}": replace(AURWEB.suites["sharness"], name=f"suite{n:04d}") for n in range(900)}
    config = replace(AURWEB, suites=suites)
    record = series()
    tip = [replace(sharness_base, suite=name) for name in suites]
    runs = tuple(SuiteRun(result, None, "prove -e bash t*.t", 1) for result in tip)
    plan = SuitePlan(frozenset({"python"}), tuple(suites.values()), ())
    run = TestRun(record, applied(), plan, runs, {}, compare(tip, {}, {}), STARTED)
    summary = json.loads(json.dumps(run.summary()))
    text = body(record, StoredTestRun(12, record.id, STARTED, STARTED, summary, tuple(tip)), config)
    assert len(text.encode()) <= MAX_REPLY_BYTES
    matches_golden("cut-short", "\n".join(text.split("\n")[-6:]))


def test_not_tested_after_retries(sharness_base):
    """The machine failed the run again and again: the list hears it once, the operator was told."""
    not_tested = pytest.importorskip("patchbot.reply.not_tested")
    record = series(title="spawn: serve the RPC from FastAPI")
    smoke = SuiteResult("smoke", Outcome.INFRA_ERROR, None, 0.0, "environment venv could not be built: pip exited 1")
    run = stored(record, [sharness_base, smoke], {"sharness": sharness_base})
    lines = []  # as not_tested_reply makes them
    for suite, line in zip(run.summary["suites"], result_context(AURWEB, record, run)["suite_lines"]):
        if suite["status"] == "infra-error":
            line = f"{suite['name']:<10} ERROR   {not_tested.suite_reason(suite['detail'], ())}"
        lines.append(line.strip())
    text = render("reply/not-tested.txt", who="This patch", attempts=3, suites=lines, reason="")
    matches_golden("not-tested", text)


# -- what holds for all of them -----------------------------------------------------------------


def command_lines() -> set[str]:
    """Lines of the configured commands: a reproduce block shows them as they are (a shell line
    wrapped would do something else), so they may be longer than LINE_WIDTH."""
    commands = [suite.command for suite in AURWEB.suites.values()] + [env.command for env in AURWEB.environments.values()]
    return {line.strip() for command in commands for line in command.split("\n") if line.strip()} | {
        line.strip().replace("$PATCHBOT_ENV", "$HOME/.cache/patchbot-env/venv")
        for command in commands for line in command.split("\n")}


def test_every_golden_reply_keeps_to_76_columns():
    """Issue 13: lines of at most 76 characters, but a single token that cannot be broken (a URL,
    a long test name) on a line of its own, or a line of a configured command."""
    allowed = command_lines()
    files = sorted(GOLDEN.glob("*.txt"))
    assert len(files) >= 8, files
    too_long = [(path.name, line) for path in files for line in path.read_text().split("\n")
                if len(line) > LINE_WIDTH and len(line.split()) > 1 and line.strip() not in allowed]
    assert not too_long, too_long
    assert LINE_WIDTH == 76


def test_no_golden_reply_shows_a_tab_caret_or_the_machine():
    allowed = command_lines()
    for path in GOLDEN.glob("*.txt"):
        text = path.read_text()
        assert "\t" not in text and "^I" not in text and "$PATCHBOT_ENV" not in text, path.name
        ours = "\n".join(line for line in text.split("\n") if line.strip() not in allowed)
        assert not re.search(r"/tmp/|/var/lib/patchbot|/work/|/home/", ours), path.name
