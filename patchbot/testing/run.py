"""Test one series version end to end: choose the base, apply, plan, run at tip and base, compare.

The base is tested only for suites that fail at the tip (to tell new failures from old
ones), and its results are kept in the store and reused by every later series on the same
base, so a base is tested at most once per suite configuration.
"""

from __future__ import annotations

import email
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.policy import default
from pathlib import Path

from patchbot.testing.apply import (
    Applied, BaseChoice, apply_series, clean_leftover_worktrees, ensure_mirror, fetch, on_branches, paths_in_tree,
    remove_worktree,
)
from patchbot.config.records import Config, RepositoryConfig, SuiteConfig
from patchbot.testing.environments import EnvironmentNote, RULE_VERSION, RunEnvironments
from patchbot.testing.executors.choose import executor_for
from patchbot.testing.executors.protocol import Executor, SuiteRun, TestedVersion, Workspace
from patchbot.series.pulls import Pulled, apply_pull
from patchbot.testing.verdict import SuiteResult, Verdict, compare
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord
from patchbot.testing.plan import SuitePlan, plan_suites
from patchbot.testing.base import BaseHints, _hints, _patch_mails, choose_base
from patchbot.testing.errors import TestRunError
from patchbot.testing.reports import NAMES_VERSION, Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestRun:
    """A finished test of one series version, ready to store and to report."""

    __test__ = False

    series: SeriesRecord
    applied: Applied
    plan: SuitePlan | None
    tip: tuple[SuiteRun, ...]
    base: dict[str, SuiteResult]
    verdict: Verdict | None
    started_at: datetime
    environments: tuple[EnvironmentNote, ...] = ()  # those the tip's suites used
    pull: Pulled | None = None  # a pull request's fetch and merge (applied is its merge)

    def summary(self) -> dict:
        """The JSON object `patchbot test --json` prints and the store keeps."""
        applied = self.applied
        runs = {run.result.suite: run for run in self.tip}
        return {
            "series": self.series.id,
            "version": self.series.version,
            "kind": self.series.kind,
            "pull": self.pull.as_json(self.series.pull) if self.pull else None,
            "applied": applied.ok,
            "failed_patch": applied.failed_patch,
            "failed_total": applied.failed_total,
            "failed_subject": applied.failed_subject,
            "prerequisite_failed": applied.prerequisite_failed,
            "conflicts": [{"path": c.path, "line": c.line} for c in applied.conflicts],
            "apply_detail": applied.detail,
            "base": applied.base_commit,
            "base_ref": applied.base.ref,
            "base_reason": applied.base.reason,
            "base_branch": applied.base.branch,
            "base_behind_tip": applied.base_behind_tip,
            "head": applied.head,
            "stacks": sorted(self.plan.stacks) if self.plan else [],
            "left_out": [{"suite": name, "reason": reason} for name, reason in self.plan.left_out] if self.plan else [],
            "outcome": self.verdict.outcome.value if self.verdict else "not-applied",
            "suites": [
                {
                    "name": verdict.suite,
                    "status": verdict.outcome.value,
                    "passed": verdict.passed,
                    "failed": verdict.failed,
                    "skipped": verdict.skipped,
                    "new_failures": list(verdict.new_failures),
                    "new_failures_on_base": {test: self._on_base(verdict.suite, test) for test in verdict.new_failures},
                    "preexisting_failures": list(verdict.preexisting_failures),
                    "fixed": list(verdict.fixed),
                    "fixed_since_previous": list(verdict.fixed_since_previous),
                    "still_failing_since_previous": list(verdict.still_failing_since_previous),
                    "new_since_previous": list(verdict.new_since_previous),
                    "duration_s": round(verdict.duration_s, 2),
                    "detail": verdict.detail,
                    "command": runs[verdict.suite].command,
                    "log": str(runs[verdict.suite].log) if runs[verdict.suite].log else None,
                    "base_status": self.base[verdict.suite].outcome.value if verdict.suite in self.base else None,
                }
                for verdict in (self.verdict.suites if self.verdict else ())
            ],
            "environments": [note.as_json() for note in self.environments],
        }

    def _on_base(self, suite: str, test: str) -> str:
        """What a test that fails at the tip did on the base: passed, absent, skipped or unknown."""
        base = self.base.get(suite)
        if base is None or base.outcome not in (Outcome.PASS, Outcome.FAIL):
            return "unknown"
        if base.report is None:
            return "passed" if base.outcome is Outcome.PASS else "unknown"
        case = next((case for case in base.report.cases if case.name == test), None)
        if case is None:
            return "absent"
        return {Outcome.PASS: "passed", Outcome.SKIPPED: "skipped"}.get(case.outcome, "unknown")


@dataclass(frozen=True)
class RunContext:
    """What one test of one series version works with, fixed once its series is applied: the
    stages of a run (plan, environments, tip, base, compare) take this, not ten positional values."""

    store: Store
    config: Config
    repository: RepositoryConfig
    mirror: Path
    series: SeriesRecord
    applied: Applied
    work: Path  # mirrors/, worktrees/, environments/, logs/ live here
    hidden: tuple[Path, ...]  # the bot's own files (secrets_of), invisible inside a sandbox
    started: datetime
    executor: Executor
    only_suite: str | None = None  # a retest of one suite
    fresh_base: bool = False  # run the base again even where a result is kept (a retest)
    # What the series changes, where its mails do not say it (a pull request's base...tip).
    paths: tuple[str, ...] | None = None

    @property
    def logs(self) -> Path:
        return self.work / "logs" / f"series-{self.series.id}-{self.started.strftime('%Y%m%dT%H%M%S%f')}"

    def tested(self) -> TestedVersion:
        return TestedVersion(self.series.id, self.series.version, self.series.title,
                             lambda: _description(self.store, self.series))


def secrets_of(config: Config, database: Path) -> tuple[Path, ...]:
    """What code from a patch must never see: the config, the database and its journals, the
    SMTP and IMAP passwords, the GitLab token."""
    paths = [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
    if config.source is not None:
        paths.append(config.source.resolve())
    if config.smtp.password_file is not None:
        paths.append(config.smtp.password_file)
    if config.sources.imap is not None:
        paths.append(config.sources.imap.password_file)
    if config.gitlab is not None and config.gitlab.token_file is not None:
        paths.append(config.gitlab.token_file)
    return tuple(path for path in paths if path.exists())


def work_dir(config: Config, db_path: Path) -> Path:
    return config.work_dir or db_path.parent / "work"


def test_series(
    store: Store, config: Config, series_id: int, *, work: Path, hidden: tuple[Path, ...],
    base_ref: str | None = None, repository_url: str | None = None, only_suite: str | None = None,
) -> TestRun:
    """Run everything for one stored series and keep the result in the store."""
    run = run_test(store, config, series_id, work=work, hidden=hidden, base_ref=base_ref,
                   repository_url=repository_url, only_suite=only_suite)
    with store.transaction():
        keep_test_run(store, run)
    return run


def keep_test_run(store: Store, run: TestRun) -> int:
    """Store a finished run (inside the caller's transaction, with what follows from it)."""
    return store.add_test_run(run.series.id, run.started_at, run.summary(), [suite.result for suite in run.tip])


def run_test(
    store: Store, config: Config, series_id: int, *, work: Path, hidden: tuple[Path, ...],
    base_ref: str | None = None, repository_url: str | None = None, only_suite: str | None = None,
    fresh_base: bool = False,
) -> TestRun:
    """Run everything for one stored series; the caller stores the run (see keep_test_run).
    `fresh_base`: run the base of every suite that fails again, kept results or not (a retest)."""
    started = datetime.now(timezone.utc)
    repository = _repository(config, repository_url)
    series = store.series(series_id)
    if series is None:
        raise TestRunError(f"no series {series_id}")
    patches = _patch_mails(store, series) if series.pull is None else []  # a pull's own patches are its record
    if not patches and series.pull is None:
        raise TestRunError(f"series {series_id} has no patches yet")
    if not series.complete:
        log.warning("series %d is incomplete (has %s of %s): testing the patches it has",
                    series.id, ", ".join(map(str, series.received)), series.total or "?")
    if series.obsolete:
        log.warning("series %d is obsolete: a newer version supersedes it", series.id)
    mirror = ensure_mirror(repository.url, work / "mirrors")
    worktrees = work / "worktrees"
    fetch(mirror)
    pulled = None
    if series.pull is not None:
        # The base its mail announced, if reviewed history holds it (looked up before the pull's own
        # commits are fetched): else the default branch.
        announced = series.pull.base if series.pull.base and on_branches(mirror, series.pull.base,
                                                                         reviewed_branches(repository)) else None
        base = choose_base(store, mirror, repository, BaseHints(None, announced, ()), base_ref)
        if announced and base.ref == announced:
            base = replace(base, reason=f"the base {announced[:12]} the pull request names")
        pulled = apply_pull(mirror, base, series.pull, series.id, repository, worktrees)
        applied = pulled.applied
    else:
        base = choose_base(store, mirror, repository, _hints(store, series), base_ref)
        applied = apply_series(mirror, base, patches, worktrees)
    run = TestRun(series, applied, None, (), {}, None, started)
    if applied.ok:
        try:
            run = _run_suites(RunContext(store, config, repository, mirror, series, applied, work, hidden, started,
                                         executor_for(config), only_suite, fresh_base,
                                         tuple(pulled.paths) if pulled else None))
        finally:
            remove_worktree(mirror, applied.worktree)
    return replace(run, pull=pulled)


def clean_up_after_crash(config: Config, work: Path, repository_url: str | None = None) -> int:
    """Remove worktrees a crashed run left behind (call before the first run of a process)."""
    repository = _repository(config, repository_url)
    mirror = ensure_mirror(repository.url, work / "mirrors")
    return clean_leftover_worktrees(mirror, work / "worktrees")


def _repository(config: Config, repository_url: str | None) -> RepositoryConfig:
    if repository_url:
        default = config.repository or RepositoryConfig(url=repository_url)
        return replace(default, url=repository_url, push_url=None)
    if config.repository is None:
        raise TestRunError("no repository: set [repository] url in the config, or give --repo PATH")
    return config.repository


def suite_key(suite: SuiteConfig, environment_key: str | None) -> str:
    """Base results are reused only by the same suite configuration, run in the same environment
    (the key of every input it was built from), under the same rule: a changed environment
    command, key file or suite definition runs the base again (issue 12 item 5)."""
    fields = [suite.command, suite.workdir, suite.format, suite.result_path, suite.environment, suite.timeout_s,
              environment_key, RULE_VERSION, NAMES_VERSION]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def reviewed_branches(repository: RepositoryConfig) -> list[str]:
    """The branches whose commits count as reviewed: their dependency files may download."""
    return [repository.default_branch, *repository.branches, *repository.tag_branches.values()]


def _run_suites(context: RunContext) -> TestRun:
    store, config, series, applied = context.store, context.config, context.series, context.applied
    paths = _paths_touched(store, series) if context.paths is None else list(context.paths)
    required = sorted({path for suite in config.suites.values() for path in suite.requires})
    present = paths_in_tree(context.mirror, applied.base_commit, required)
    plan = plan_suites(paths, config, present.__contains__)
    only_suite = context.only_suite
    if only_suite is not None:  # a retest of one suite
        plan = SuitePlan(plan.stacks, tuple(suite for suite in plan.run if suite.name == only_suite),
                         (*plan.left_out, *((suite.name, "not asked for") for suite in plan.run if suite.name != only_suite)))
    logs = context.logs
    # Environments are set up where the suites run: GitLab's jobs make their own.
    needed = ({suite.environment for suite in plan.run if suite.environment}
              if context.executor.prepares_environments else set())
    environments = RunEnvironments.plan(
        config, context.mirror, sorted(needed), base_commit=applied.base_commit, head=applied.head,
        base_reviewed=bool(needed) and on_branches(context.mirror, applied.base_commit,
                                                   reviewed_branches(context.repository)),
        trusted=store.trusted_dependencies(series.id) if needed else set(), cache_dir=context.work / "environments",
        hidden=context.hidden, log_dir=logs)
    tip_space = _workspace(config, applied.worktree, logs, context.hidden, "tip", environments.for_tip())
    tip = tuple(_execute(context, plan.run, tip_space))
    base = _base_results(context, tip, environments)
    previous = {}
    if series.supersedes_id is not None and (earlier := store.latest_test_run(series.supersedes_id)):
        previous = {result.suite: result for result in earlier.tip}
    verdict = compare([run.result for run in tip], base, previous)
    return TestRun(series, applied, plan, tip, base, verdict, context.started, tuple(environments.notes()))


def _base_results(context: RunContext, tip: tuple[SuiteRun, ...], environments: RunEnvironments) -> dict[str, SuiteResult]:
    """The base's results for the suites that failed at the tip: kept ones, else run now.

    A suite that passes at the tip has no failure to classify, so its base is not run: a
    passing series costs one run of its suites, not two.
    """
    store, config, applied = context.store, context.config, context.applied
    base: dict[str, SuiteResult] = {}
    missing = []
    for run in tip:
        suite = config.suites[run.result.suite]
        if run.result.outcome is not Outcome.FAIL:
            continue
        key = suite_key(suite, environments.base_key(suite.environment))
        cached = None if context.fresh_base else store.base_result(applied.base_commit, suite.name, key)
        if cached is not None:
            base[suite.name] = cached
        else:
            missing.append(suite)
    if not missing:
        return base
    base_tree = apply_series(context.mirror, BaseChoice(applied.base_commit, "base", applied.base.branch), [],
                             context.work / "worktrees")
    try:
        base_space = _workspace(config, base_tree.worktree, context.logs, context.hidden, "base", environments.for_base())
        runs = _execute(context, missing, base_space)
    finally:
        remove_worktree(context.mirror, base_tree.worktree)
    with store.transaction():
        for run in runs:
            base[run.result.suite] = run.result
            if run.result.outcome in (Outcome.PASS, Outcome.FAIL):  # the machine's failures are not kept
                suite = config.suites[run.result.suite]
                store.keep_base_result(applied.base_commit, suite_key(suite, environments.base_key(suite.environment)), run.result)
    return base


def _execute(context: RunContext, suites, space: Workspace) -> list[SuiteRun]:
    """Where the suites run: the configured executor (executors/choose.py)."""
    return context.executor.run(suites, space, context.tested())


def _description(store: Store, series: SeriesRecord) -> str:
    """The cover letter's text (else the first patch's), for a merge request."""
    message = email.message_from_bytes(store.raw_mail(series.cover_mail_id or series.patches[0].mail_id), policy=default)
    body = message.get_body(("plain",))
    try:
        return body.get_content() if body is not None else series.title
    except (LookupError, UnicodeError):  # a charset Python does not know: the title will do
        return series.title


def _workspace(config: Config, worktree: Path, logs: Path, hidden, label: str, prepared) -> Workspace:
    ready, missing = prepared  # suites needing a missing one report why (RunEnvironments)
    return Workspace(worktree, config, logs, ready, hidden, label, missing)


def _paths_touched(store: Store, series: SeriesRecord) -> list[str]:
    paths = []
    for slot in series.patches:
        facts = store.mail_by_id(slot.mail_id).facts
        for change in facts.files if facts else ():
            paths.append(change.path)
            if change.old_path:
                paths.append(change.old_path)
    return paths
