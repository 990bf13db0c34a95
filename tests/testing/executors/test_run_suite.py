"""Suites in the real sandbox: their environment read-only, the machine's failures retried once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from patchbot.config.records import Config, EnvironmentConfig, LimitsConfig, SuiteConfig
from patchbot.testing.environments import MissingEnvironment
from patchbot.testing.executors.local import run_suite, run_suites
from patchbot.testing.executors.protocol import Workspace
from patchbot.testing.sandbox import sandbox_available
from patchbot.testing.reports import Outcome

pytestmark = pytest.mark.skipif(sandbox_available() is not None, reason=f"no sandbox: {sandbox_available()}")

CONFIG = Config(
    path=(str(Path(sys.executable).parent), "/usr/bin", "/bin"),
    expose=(Path(sys.base_prefix).resolve(), Path(sys.prefix)),
    limits=LimitsConfig(memory_mb=512, processes=64, output_kb=256),
)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / "requirements.txt").write_text("pytest\n")
    return Workspace(worktree, CONFIG, tmp_path / "logs", {}, (), "tip")


def test_a_suite_sees_its_environment_read_only(workspace, tmp_path):
    folder = tmp_path / "envs" / "env"
    folder.mkdir(parents=True)
    (folder / "flag").write_text("ready\n")
    space = Workspace(workspace.worktree, CONFIG, workspace.log_dir, {"env": folder}, (), "tip")
    suite = SuiteConfig("s", 'grep -q ready "$PATCHBOT_ENV/flag" && ! touch "$PATCHBOT_ENV/x"', ("*",), environment="env")
    assert run_suite(suite, space).result.outcome is Outcome.PASS


def test_a_suite_whose_environment_waits_for_trust_is_skipped_with_the_reason(workspace):
    missing = {"env": MissingEnvironment(Outcome.SKIPPED, "changes dependencies: needs a maintainer's `patchbot: trust-deps`")}
    space = Workspace(workspace.worktree, CONFIG, workspace.log_dir, {}, (), "tip", missing)
    run = run_suite(SuiteConfig("s", "true", ("*",), environment="env"), space)
    assert (run.result.outcome, run.attempts) == (Outcome.SKIPPED, 1) and "trust-deps" in run.result.detail


def test_a_suite_whose_environment_is_not_set_up_is_an_infrastructure_error(workspace):
    run = run_suite(SuiteConfig("s", "true", ("*",), environment="env"), workspace)
    assert run.result.outcome is Outcome.INFRA_ERROR and run.result.detail == "environment env is not set up"


def test_a_suite_whose_command_is_not_found_fails_naming_the_missing_command(workspace):
    """Issue 12 item 4: the patch's failure if it removed the command (the base is healthy), the
    machine's if the base says the same (results.cannot_vouch): the run itself cannot tell."""
    run = run_suite(SuiteConfig("s", "no-such-test-runner --all", ("*",)), workspace)
    assert (run.result.outcome, run.result.exit_code, run.attempts) == (Outcome.FAIL, 127, 1)
    assert run.result.detail == "the command was not found (exit code 127)"
    assert str(run.result.broken) == "missing command: no-such-test-runner"


def test_a_missing_report_after_a_clean_exit_is_an_infrastructure_error(workspace):
    run = run_suite(SuiteConfig("s", "true", ("*",), format="junit", result_path="report.xml"), workspace)
    assert run.result.outcome is Outcome.INFRA_ERROR and "report.xml was not written" in run.result.detail


def test_a_crash_before_the_report_is_the_patch_s_failure(workspace):
    run = run_suite(SuiteConfig("s", "echo Traceback; exit 2", ("*",), format="junit", result_path="r.xml"), workspace)
    assert run.result.outcome is Outcome.FAIL and run.attempts == 1
    assert "Traceback" in run.log.read_text()


def test_a_slow_suite_times_out(workspace):
    run = run_suite(SuiteConfig("s", "sleep 30", ("*",), timeout_s=1), workspace)
    assert run.result.outcome is Outcome.TIMEOUT and run.result.duration_s < 10


def test_tap_and_junit_reports_are_read(workspace):
    tap = SuiteConfig("tap", "printf '1..2\\nok 1 - a\\nnot ok 2 - b\\n'; exit 1", ("*",), format="tap")
    junit = SuiteConfig("junit", "printf '<testsuite><testcase classname=\"t\" name=\"x\"/></testsuite>' > r.xml",
                        ("*",), format="junit", result_path="r.xml")
    tap_run, junit_run = run_suites([(tap, workspace), (junit, workspace)], parallel=2)
    assert (tap_run.result.outcome, tap_run.result.report.passed, tap_run.result.report.failed) == (Outcome.FAIL, 1, 1)
    assert (junit_run.result.outcome, junit_run.result.report.passed) == (Outcome.PASS, 1)


def test_a_workdir_leading_outside_the_worktree_is_refused(workspace):
    (workspace.worktree / "escape").symlink_to("/etc")
    run = run_suite(SuiteConfig("s", "true", ("*",), workdir="escape"), workspace)
    assert run.result.outcome is Outcome.FAIL and "outside the worktree" in run.result.detail


def test_a_sandbox_stopped_from_outside_is_the_machines_failure_not_the_patchs(workspace):
    """An operator's or a service manager's SIGTERM says nothing of the patch: retried, not failed."""
    import os
    import signal
    import threading
    import time

    def stop_the_first_sandbox() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                    command = (entry / "cmdline").read_bytes().split(b"\0")[0]
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and command.endswith(b"bwrap"):
                    time.sleep(0.3)
                    os.kill(int(entry.name), signal.SIGTERM)
                    return
            time.sleep(0.02)

    stopper = threading.Thread(target=stop_the_first_sandbox)
    stopper.start()
    run = run_suite(SuiteConfig("s", "sleep 1", ("*",)), workspace)
    stopper.join()
    assert (run.result.outcome, run.attempts) == (Outcome.PASS, 2)  # the second attempt ran undisturbed
