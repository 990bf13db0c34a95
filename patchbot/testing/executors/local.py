"""Run a series' suites, each in its own sandbox, several at once, and read their reports.

The machine's failures (a sandbox that cannot start, a report that cannot be read after a
clean exit) are INFRA_ERROR and retried once; they are never the patch's fault. A failed run
that shows its environment broken (a command not found, an import error: suite_health) is a
FAIL that says so: whether it is the patch's or the machine's, only the base can tell
(results.cannot_vouch).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from patchbot.config.records import Config, SuiteConfig
from patchbot.testing.verdict import SuiteResult
from patchbot.testing.sandbox import Ending, Limits, SandboxResult, SandboxSpec, run_sandboxed
from patchbot.testing.suite_health import FailedRun, breakage_of
from patchbot.testing.executors.protocol import SuiteRun, TestedVersion, Workspace
from patchbot.testing.reports import Outcome, ReportError, TestReport, parse_junit, parse_tap
from patchbot.testing.treefiles import TreePathRefused, folder_refusal, open_tree_file, remove_tree_file, tree_relative

log = logging.getLogger(__name__)


# Exit codes of a shell that could not run a command: the machine's problem when the base says
# the same, the patch's when it removed the command (results.cannot_vouch).
CANNOT_START = {126: "the command is not executable", 127: "the command was not found"}
# Signals with which a whole sandbox is stopped from outside (patchbot's own kills are SIGKILL).
STOPPED_FROM_OUTSIDE = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
MAX_REPORT_BYTES = 64 * 1024 * 1024


def limits_of(config: Config, wall_seconds: float) -> Limits:
    return Limits(
        wall_seconds=wall_seconds,
        memory_bytes=config.limits.memory_mb * 1024 * 1024,
        max_processes=config.limits.processes,
        max_output_bytes=config.limits.output_kb * 1024,
    )


def sandbox_env(config: Config, environment: Path | None) -> dict[str, str]:
    """The whole environment inside: nothing of the bot's (no tokens, no passwords) leaks in."""
    # PYTHONUNBUFFERED: a suite killed at its time limit still leaves what it printed.
    env = {"PATH": ":".join(config.path), "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "CI": "true",
           "PYTHONUNBUFFERED": "1"}
    if environment is not None:
        env["PATCHBOT_ENV"] = str(environment)
    return env


class LocalExecutor:
    """The `local` executor (see protocol.Executor): each suite in a sandbox of this machine."""

    name = "local"
    prepares_environments = True

    def __init__(self, config: Config):
        self.parallel = config.parallel

    def run(self, suites: Sequence[SuiteConfig], workspace: Workspace, tested: TestedVersion) -> list[SuiteRun]:
        return run_suites([(suite, workspace) for suite in suites], self.parallel)


def run_suites(jobs: Sequence[tuple[SuiteConfig, Workspace]], parallel: int) -> list[SuiteRun]:
    """Run independent suites (each in its workspace) `parallel` at a time; results in job order."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(parallel, len(jobs))) as pool:
        return list(pool.map(lambda job: run_suite(*job), jobs))


def run_suite(suite: SuiteConfig, workspace: Workspace) -> SuiteRun:
    """One suite, retried once when the machine (not the patch) failed."""
    run = _attempt(suite, workspace, 1)
    if run.result.outcome is Outcome.INFRA_ERROR:
        log.warning("suite %s (%s): infrastructure failure, retrying once: %s", suite.name, workspace.label, run.result.detail)
        run = _attempt(suite, workspace, 2)
    return run


def _attempt(suite: SuiteConfig, workspace: Workspace, attempt: int) -> SuiteRun:
    environment = None
    if suite.environment is not None:
        environment = workspace.environments.get(suite.environment)
        if environment is None:
            missing = workspace.missing_environments.get(suite.environment)
            outcome, detail = (missing.outcome, missing.detail) if missing else (
                Outcome.INFRA_ERROR, f"environment {suite.environment} is not set up")
            return SuiteRun(SuiteResult(suite.name, outcome, None, 0.0, detail), None, suite.command, attempt)
    inside = workspace.worktree.resolve()
    # The tree comes from the patch: the bot reaches the workdir and the report only from the
    # worktree's root, component by component, following no symlink (patchbot.testing.treefiles).
    try:
        workdir = tree_relative(suite.workdir)
        report = tree_relative(suite.workdir, suite.result_path) if suite.result_path else None
    except TreePathRefused as refused:
        return SuiteRun(SuiteResult(suite.name, Outcome.FAIL, None, 0.0, str(refused)), None, suite.command, attempt)
    refusal = folder_refusal(inside, workdir)
    if refusal is not None:
        return SuiteRun(SuiteResult(suite.name, Outcome.FAIL, None, 0.0, refusal), None, suite.command, attempt)
    cwd = inside.joinpath(*workdir)
    if report is not None:
        remove_tree_file(inside, report)  # a stale report must not pass for this run's
    sandboxed = run_sandboxed(SandboxSpec(
        argv=("/bin/sh", "-c", suite.command), worktree=workspace.worktree, cwd=cwd,
        env=sandbox_env(workspace.config, environment), limits=limits_of(workspace.config, suite.timeout_s),
        readonly_paths=(*workspace.config.expose, *((environment,) if environment else ())),
        hidden_paths=workspace.hidden_paths,
    ))
    log_path = _keep_output(workspace, suite.name, sandboxed)
    return SuiteRun(_result_of(suite, sandboxed, report, inside), log_path, suite.command, attempt)


def _keep_output(workspace: Workspace, name: str, sandboxed: SandboxResult) -> Path:
    workspace.log_dir.mkdir(parents=True, exist_ok=True)
    path = workspace.log_dir / f"{name}-{workspace.label}.log"
    notes = []
    if sandboxed.output_truncated:
        notes.append(f"output truncated: {sandboxed.output_bytes_total} bytes in all")
    if sandboxed.ending is not Ending.EXITED and sandboxed.detail:
        notes.append(sandboxed.detail)  # why it stopped: the time limit, the output limit...
    path.write_bytes(sandboxed.output + b"".join(f"\n[patchbot: {note}]\n".encode() for note in notes))
    return path


def _result_of(suite: SuiteConfig, sandboxed: SandboxResult, report_path: tuple[str, ...] | None, inside: Path) -> SuiteResult:
    duration, detail = sandboxed.duration_s, sandboxed.detail
    if sandboxed.ending is Ending.SANDBOX_ERROR:
        return SuiteResult(suite.name, Outcome.INFRA_ERROR, None, duration, f"sandbox: {detail}")
    if sandboxed.ending is Ending.TIMEOUT:
        return SuiteResult(suite.name, Outcome.TIMEOUT, None, duration, detail or f"killed after {suite.timeout_s:.0f} s")
    if sandboxed.exit_code is not None and -sandboxed.exit_code in STOPPED_FROM_OUTSIDE:
        # The sandbox itself got the signal: someone stopped the machine's work (a service
        # manager, an operator), which says nothing of the patch.
        name = signal.Signals(-sandboxed.exit_code).name
        return SuiteResult(suite.name, Outcome.INFRA_ERROR, None, duration, f"stopped from outside by {name}")
    exit_code = sandboxed.exit_code
    exit_note = f"exit code {exit_code}" if exit_code else ""
    if exit_code in CANNOT_START:
        exit_note = f"{CANNOT_START[exit_code]} (exit code {exit_code})"
    if sandboxed.ending is Ending.OUT_OF_MEMORY:
        exit_note = detail or "ran out of memory"
    elif sandboxed.ending is Ending.OUTPUT_LIMIT:
        exit_note = detail or "killed for writing too much output"
    if suite.format == "exit-code":
        if exit_code == 0:
            return SuiteResult(suite.name, Outcome.PASS, None, duration, exit_note, exit_code)
        return _failed(suite, sandboxed, None, exit_note)
    try:
        report = _read_report(suite, sandboxed, report_path, inside)
    except ReportError as error:
        if exit_code != 0:
            # No usable report and a failing exit: the suite broke before reporting.
            note = "; ".join(filter(None, (exit_note, f"no test report: {error}")))
            return _failed(suite, sandboxed, None, note, str(error))
        return SuiteResult(suite.name, Outcome.INFRA_ERROR, None, duration, f"no test report: {error}", exit_code)
    # No test at all is never a pass, and a command that could not run fails whatever it reported:
    # the base then tells whether the patch or the machine broke it.
    if report.failed > 0 or report.total == 0 or exit_code in CANNOT_START:
        return _failed(suite, sandboxed, report, exit_note)
    return SuiteResult(suite.name, Outcome.PASS, report, duration, exit_note, exit_code)


def _failed(suite: SuiteConfig, sandboxed: SandboxResult, report: TestReport | None, note: str,
            report_error: str = "") -> SuiteResult:
    """A failed run, with what in it shows a broken environment (suite_health), if anything."""
    output = sandboxed.output.decode(errors="replace")
    broken = breakage_of(FailedRun(suite.command, sandboxed.exit_code, output, report, report_error))
    return SuiteResult(suite.name, Outcome.FAIL, report, sandboxed.duration_s, note, sandboxed.exit_code, broken)


def _read_report(suite: SuiteConfig, sandboxed: SandboxResult, report_path: tuple[str, ...] | None, inside: Path) -> TestReport:
    if suite.format == "tap":
        return parse_tap(sandboxed.output.decode(errors="replace"))
    if report_path is None:
        raise ReportError(f"{suite.result_path} was not written")
    try:
        report = open_tree_file(inside, report_path, MAX_REPORT_BYTES)
    except TreePathRefused as refused:
        raise ReportError(str(refused)) from None
    with report:
        return parse_junit(report)  # read as a capped stream, never whole
