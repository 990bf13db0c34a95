"""The `gitlab` executor: run a series' suites on the GitLab CI of the project, not locally.

The applied worktree's commit is pushed to a branch `patchbot/<series>-v<version>` of the
configured project, with push options that set CI variables (which suites, which series). Its
pipeline is found and followed with python-gitlab until it ends or `[gitlab] timeout` passes
(then it is canceled: TIMEOUT). Its JUnit test report becomes the same per-suite results a
local run gives (a job without a report counts by its status, its log kept), and the branch
is deleted, whatever happened. Transient API answers (5xx, 429) are retried with backoff; an
API still failing, a failed push or a missing token raise GitlabUnavailable, and the test is
retried later like one whose repository was unreachable: never blamed on the patch.

The token is read from its file or variable when needed, sent only in the API's and git's
request headers (git gets it through its environment, not its command line), never logged.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gitlab
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from patchbot.testing.apply import git
from patchbot.config.records import Config, GitlabConfig, SuiteConfig
from patchbot.testing.executors.protocol import SuiteRun, TestedVersion, Workspace
from patchbot.testing.verdict import SuiteResult
from patchbot.testing.reports import Outcome, TestReport, parse_tap, report_from_cases
from patchbot.testing.errors import TestRunError

log = logging.getLogger(__name__)

FINISHED = {"success", "failed", "canceled", "skipped"}
# GitLab's test case statuses.
CASE_OUTCOMES = {"success": Outcome.PASS, "failed": Outcome.FAIL, "error": Outcome.ERROR, "skipped": Outcome.SKIPPED}
JOB_OUTCOMES = {"success": Outcome.PASS, "failed": Outcome.FAIL, "skipped": Outcome.SKIPPED, "manual": Outcome.SKIPPED}
API_TIMEOUT_S = 60
API_BACKOFF_S = 0.5  # between retries of a transient answer: 0, 1, 2, 4... seconds
TRANSIENT = (429, 500, 502, 503, 504)


class GitlabUnavailable(TestRunError):
    """No token, a failed push, or an API failing past its retries: the run could not happen.
    Like an unreachable repository, it is the machine's trouble: the test is retried later,
    and nothing is said on the list."""


@dataclass(frozen=True)
class GitlabRun:
    """One series version (tip or base) to run on GitLab."""

    series_id: int
    version: int
    label: str  # "tip" or "base"
    title: str
    description: str  # the cover letter, for the merge request

    @property
    def branch(self) -> str:
        suffix = "" if self.label == "tip" else f"-{self.label}"
        return f"patchbot/{self.series_id}-v{self.version}{suffix}"


class GitlabExecutor:
    """The `gitlab` executor (see protocol.Executor): the suites run as the project's CI jobs,
    which set up their own environments."""

    name = "gitlab"
    prepares_environments = False

    def __init__(self, config: Config):
        self.config = config

    def run(self, suites: Sequence[SuiteConfig], workspace: Workspace, tested: TestedVersion) -> list[SuiteRun]:
        run = GitlabRun(tested.series_id, tested.version, workspace.label, tested.title, tested.description())
        return run_on_gitlab(self.config, suites, workspace, run)


def read_token(settings: GitlabConfig) -> str:
    if settings.token_env is not None:
        token = os.environ.get(settings.token_env, "").strip()
        if not token:
            raise GitlabUnavailable(f"no GitLab token: the variable {settings.token_env} is empty or unset")
        return token
    try:
        token = settings.token_file.read_text().strip()
    except OSError as error:
        raise GitlabUnavailable(f"no GitLab token: cannot read {settings.token_file}: {error.strerror}") from None
    if not token:
        raise GitlabUnavailable(f"no GitLab token: {settings.token_file} is empty")
    return token


def run_on_gitlab(config: Config, suites: Sequence[SuiteConfig], workspace: Workspace, run: GitlabRun) -> list[SuiteRun]:
    """Every suite's result from the project's pipeline for this commit, in the order asked."""
    if not suites:
        return []
    settings = config.gitlab
    started = time.monotonic()
    pushed = False
    try:
        token = read_token(settings)
        sha = _git(workspace.worktree, "rev-parse", "HEAD").strip()
        _push(settings, token, workspace.worktree, f"HEAD:refs/heads/{run.branch}", _push_options(settings, suites, run))
        pushed = True
        project = _project(settings, token)
        if settings.merge_requests and run.label == "tip":
            _merge_request(config, settings, token, workspace.worktree, project, run)
        pipeline, timed_out = _follow(settings, project, run.branch, sha)
        results = _results(settings, project, pipeline, timed_out, suites, workspace, time.monotonic() - started)
        if settings.commit_status and run.label == "tip":
            _commit_status(project, sha, results, pipeline)
        return results
    except (gitlab.exceptions.GitlabError, requests.RequestException) as error:
        raise GitlabUnavailable(f"GitLab: {_words(error)}") from None
    finally:
        if pushed:
            _delete_branch(settings, token, workspace.worktree, run.branch)


def _push_options(settings: GitlabConfig, suites: Sequence[SuiteConfig], run: GitlabRun) -> list[str]:
    variables = {"PATCHBOT_SERIES": str(run.series_id), "PATCHBOT_VERSION": str(run.version),
                 "PATCHBOT_SUITES": ",".join(settings.jobs.get(suite.name, suite.name) for suite in suites),
                 **settings.variables}
    return [f"ci.variable={name}={value}" for name, value in variables.items()]


def _project(settings: GitlabConfig, token: str):
    # urllib3 retries the transient answers (with backoff, honouring Retry-After) for every
    # request of this client: python-gitlab's own retry count can only be set per call.
    retry = Retry(total=settings.api_retries, backoff_factor=API_BACKOFF_S, status_forcelist=TRANSIENT,
                  allowed_methods=None, respect_retry_after_header=True)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    client = gitlab.Gitlab(settings.url, private_token=token, timeout=API_TIMEOUT_S, session=session,
                           ssl_verify=str(settings.ca_file) if settings.ca_file else True)
    return client.projects.get(settings.project, lazy=True)


def _follow(settings: GitlabConfig, project, branch: str, sha: str):
    """The pipeline of this push, followed until it ends; canceled by us past the time limit
    (then the second value is True)."""
    deadline = time.monotonic() + settings.timeout_s
    pipeline = None
    while pipeline is None:
        found = project.pipelines.list(ref=branch, sha=sha, order_by="id", sort="desc", get_all=False)
        if found:
            pipeline = project.pipelines.get(found[0].id)
            break
        if time.monotonic() >= deadline:
            raise GitlabUnavailable(f"no pipeline started for {branch} within {settings.timeout_s:g} s")
        time.sleep(settings.poll_s)
    log.info("gitlab: pipeline %s for %s (%s)", pipeline.id, branch, getattr(pipeline, "web_url", ""))
    while pipeline.status not in FINISHED:
        if time.monotonic() >= deadline:
            log.warning("gitlab: pipeline %s still %s after %.0f s: canceling it", pipeline.id, pipeline.status,
                        settings.timeout_s)
            pipeline.cancel()
            return pipeline, True
        time.sleep(settings.poll_s)
        pipeline.refresh()
    return pipeline, False


def _results(settings: GitlabConfig, project, pipeline, timed_out: bool, suites: Sequence[SuiteConfig],
             workspace: Workspace, duration: float) -> list[SuiteRun]:
    if timed_out:
        detail = f"the GitLab pipeline {pipeline.id} was canceled after {settings.timeout_s:g} s"
        return [_run(suite, Outcome.TIMEOUT, None, duration, detail) for suite in suites]
    if pipeline.status == "canceled":
        detail = f"the GitLab pipeline {pipeline.id} was canceled (not by patchbot)"
        return [_run(suite, Outcome.INFRA_ERROR, None, duration, detail) for suite in suites]
    reports = {suite["name"]: suite for suite in pipeline.test_report.get().attributes.get("test_suites", [])}
    jobs = {job.name: job for job in pipeline.jobs.list(get_all=True)}
    runs = []
    for suite in suites:
        name = settings.jobs.get(suite.name, suite.name)
        job = jobs.get(name)
        log_path = _keep_trace(project, job, workspace, suite.name) if job is not None else None
        if name in reports:
            report = _report(reports[name])
            failing = report.failed > 0 or (job is not None and job.status == "failed" and report.total == 0)
            runs.append(_run(suite, Outcome.FAIL if failing else Outcome.PASS, report, duration,
                             f"GitLab job {job.status}" if job is not None and job.status != "success" else "", log_path))
        elif job is not None and suite.format == "tap" and log_path is not None and job.status in ("success", "failed"):
            # No JUnit report, but the suite prints TAP: the job's log has every test.
            report = parse_tap(_plain(log_path.read_text(errors="replace")))
            failing = report.failed > 0 or (job.status == "failed" and report.total == 0)
            runs.append(_run(suite, Outcome.FAIL if failing else Outcome.PASS, report, duration,
                             f"GitLab job {job.status}, TAP read from its log", log_path))
        elif job is None:
            runs.append(_run(suite, Outcome.INFRA_ERROR, None, duration,
                             f"the GitLab pipeline {pipeline.id} has no job named {name}"))
        elif job.status in JOB_OUTCOMES:
            runs.append(_run(suite, JOB_OUTCOMES[job.status], None, duration, f"GitLab job {job.status}, no test report",
                             log_path))
        else:
            runs.append(_run(suite, Outcome.INFRA_ERROR, None, duration, f"GitLab job {job.status}", log_path))
    return runs


def _report(suite: dict) -> TestReport:
    """GitLab's cases named as parse_junit names them ("classname::name"), so a run on GitLab
    compares with a base run made locally, and the other way round."""
    return report_from_cases([
        (f"{case['classname']}::{case['name']}" if case.get("classname") else str(case.get("name")),
         CASE_OUTCOMES.get(case.get("status"), Outcome.ERROR),
         str(case.get("system_output") or case.get("stack_trace") or ""))
        for case in suite.get("test_cases") or []
    ])


# GitLab job logs carry colour codes and collapsible-section markers around each line.
_LOG_MARKUP = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|section_(?:start|end):\d+:[\w.-]+\r?")


def _plain(log: str) -> str:
    return _LOG_MARKUP.sub("", log.replace("\r\n", "\n"))


def _keep_trace(project, job, workspace: Workspace, suite: str) -> Path | None:
    """The job's log, kept where a local suite's output would be, for `patchbot log`."""
    try:
        trace = project.jobs.get(job.id, lazy=True).trace()
    except gitlab.exceptions.GitlabError as error:
        log.warning("gitlab: cannot read the log of job %s: %s", job.id, _words(error))
        return None
    workspace.log_dir.mkdir(parents=True, exist_ok=True)
    path = workspace.log_dir / f"{suite}-{workspace.label}.log"
    path.write_bytes(trace if isinstance(trace, bytes) else str(trace).encode())
    return path


def _merge_request(config: Config, settings: GitlabConfig, token: str, worktree: Path, project, run: GitlabRun) -> None:
    """One merge request per series, from a branch that follows its newest version (pushed with
    ci.skip: the test branch has the pipeline). An open one (409) is updated, not duplicated."""
    source = f"patchbot/series-{run.series_id}"
    _push(settings, token, worktree, f"+HEAD:refs/heads/{source}", ["ci.skip"])
    target = settings.target_branch or (config.repository.default_branch if config.repository else "master")
    fields = {"title": f"{run.title} (v{run.version})", "description": run.description}
    try:
        project.mergerequests.create({"source_branch": source, "target_branch": target, **fields})
        log.info("gitlab: merge request opened for series %d", run.series_id)
    except gitlab.exceptions.GitlabCreateError as error:
        if error.response_code != 409:
            raise
        for request in project.mergerequests.list(source_branch=source, state="opened", get_all=True):
            for key, value in fields.items():
                setattr(request, key, value)
            request.save()
            log.info("gitlab: merge request !%s of series %d updated to v%d", request.iid, run.series_id, run.version)


def _commit_status(project, sha: str, runs: list[SuiteRun], pipeline) -> None:
    failed = [run.result.suite for run in runs if run.result.outcome is not Outcome.PASS]
    state = "failed" if failed else "success"
    description = f"patchbot: {', '.join(failed)} did not pass" if failed else "patchbot: every suite passed"
    try:
        project.commits.get(sha, lazy=True).statuses.create(
            {"state": state, "name": "patchbot", "description": description[:255], "pipeline_id": pipeline.id})
    except gitlab.exceptions.GitlabCreateError as error:
        # 400 "Cannot transition status": the same status was posted already (a rerun).
        if error.response_code != 400:
            raise
        log.info("gitlab: commit status of %s already %s", sha[:12], state)


def _run(suite: SuiteConfig, outcome: Outcome, report: TestReport | None, duration: float, detail: str,
         log_path: Path | None = None) -> SuiteRun:
    return SuiteRun(SuiteResult(suite.name, outcome, report, duration, detail), log_path,
                    f"GitLab CI job {suite.name}", 1)


def _push(settings: GitlabConfig, token: str, worktree: Path, refspec: str, options: Sequence[str]) -> None:
    args = ["push", "--force", "--quiet", *(f"--push-option={option}" for option in options), settings.push_url, refspec]
    _git(worktree, *args, token=token, settings=settings)


def _delete_branch(settings: GitlabConfig, token: str, worktree: Path, branch: str) -> None:
    try:
        _git(worktree, "push", "--quiet", settings.push_url, "--delete", branch, token=token, settings=settings)
    except GitlabUnavailable as error:
        log.warning("gitlab: could not delete the branch %s: %s", branch, error)


def _git(worktree: Path, *args: str, token: str | None = None, settings: GitlabConfig | None = None) -> str:
    extra = {}  # added to patchbot's own git environment (apply.git), not the service's
    if settings is not None and settings.ca_file is not None:
        extra["GIT_SSL_CAINFO"] = str(settings.ca_file)
    if token is not None and settings is not None and settings.push_url.startswith("http"):
        # Through the environment, so the token is in no command line (ps shows those).
        basic = base64.b64encode(f"oauth2:{token}".encode()).decode()
        extra.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                     GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
    result = git(*args, cwd=worktree, check=False, extra_env=extra)
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip()
        words = said.replace(token, "[token]") if token else said
        raise GitlabUnavailable(f"git {args[0]} failed: {words}")
    return result.stdout.decode(errors="replace")


def _words(error: Exception) -> str:
    if isinstance(error, gitlab.exceptions.GitlabError):
        return f"{error.response_code or ''} {error.error_message}".strip()
    return str(error)
