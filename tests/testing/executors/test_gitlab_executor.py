"""The `gitlab` executor against the GitLab REST API stand-in (a GitLab server cannot run on
these machines): real git pushes to a local bare repository, real HTTP on loopback, the real
python-gitlab client; the end-to-end case renders the reply with the same templates as local runs."""

from __future__ import annotations

import email
import logging
import subprocess
from dataclasses import replace
from email.policy import default

import pytest
from gitlab_standin import GitlabStandin, Scenario, junit_suite

from patchbot.config.load import load_config
from patchbot.testing.executors.protocol import Workspace
from patchbot.testing.executors.gitlab import GitlabRun, GitlabUnavailable, run_on_gitlab
from patchbot.series.intake import take_in
from patchbot.service.pipeline import run_pending
from patchbot.demo.sample import SAMPLE_MAILS, build_sample_repo, write_sample_config
from patchbot.testing.sandbox import sandbox_available
from patchbot.sources.files import source_for
from patchbot.store.database import Store
from patchbot.testing.reports import Outcome
from patchbot.testing.run import secrets_of

TOKEN_ENV = "PATCHBOT_TEST_GITLAB_TOKEN"


@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory):
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "aurweb")


@pytest.fixture
def standin(tmp_path, monkeypatch):
    server = GitlabStandin(tmp_path)
    monkeypatch.setenv(TOKEN_ENV, server.token)
    yield server
    server.close()


def gitlab_config(tmp_path, sample_repo, standin, extra: str = "", smtp_port: int = 25):
    path = write_sample_config(tmp_path / "patchbot.toml", sample_repo, tmp_path / "work", tmp_path / "p.db", smtp_port)
    with path.open("a") as config:
        config.write(f'\n[executor]\nkind = "gitlab"\n\n[gitlab]\nurl = "{standin.url}"\nproject = "archlinux/aurweb"\n'
                     f'push_url = "{standin.remote}"\ntoken_env = "{TOKEN_ENV}"\npoll = 0.05\ntimeout = 5\n'
                     f'api_retries = 3\n{extra}\n')
    return load_config(path)


@pytest.fixture
def checkout(tmp_path, sample_repo):
    """A worktree as apply_series leaves it: the series' commit at HEAD."""
    path = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(sample_repo), str(path)], check=True)
    (path / "NOTES").write_text("notes\n")
    git = ["git", "-c", "user.name=Jane Doe", "-c", "user.email=jane@example.org"]
    subprocess.run([*git, "add", "NOTES"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "notes"], cwd=path, check=True)
    return path


def run(config, checkout, tmp_path, label="tip", suites=("python", "parity")):
    workspace = Workspace(checkout, config, tmp_path / "logs", {}, (), label)
    return run_on_gitlab(config, [config.suites[name] for name in suites], workspace,
                         GitlabRun(7, 2, label, "rpc: port search", "The cover letter.\n"))


def passing(standin, *names, where="tip") -> None:
    standin.scenarios[where] = Scenario(jobs={name: "success" for name in names},
                                        test_suites=[junit_suite(name, ["test_a", "test_b"]) for name in names])


def test_standin_success_maps_the_junit_report_and_deletes_the_branch(standin, tmp_path, sample_repo, checkout):
    passing(standin, "python", "parity")
    config = gitlab_config(tmp_path, sample_repo, standin)
    runs = run(config, checkout, tmp_path)
    assert [(r.result.suite, r.result.outcome, r.result.report.passed) for r in runs] == \
        [("python", Outcome.PASS, 2), ("parity", Outcome.PASS, 2)]
    assert runs[0].result.report.cases[0].name == "test.python::test_a"  # as parse_junit names it
    (ref, sha, options), deletion = standin.pushes()
    assert ref == "refs/heads/patchbot/7-v2" and sha == subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    assert "ci.variable=PATCHBOT_SUITES=python,parity" in options and "ci.variable=PATCHBOT_SERIES=7" in options
    assert deletion[0] == "refs/heads/patchbot/7-v2" and set(deletion[1]) == {"0"}
    assert standin.branches() == []
    assert [standin.pipelines[1]["status"]] == ["success"]
    assert sum(path.endswith("/pipelines/1") for _, path, _ in standin.requests) >= 3  # followed as it moved
    assert (tmp_path / "logs" / "python-tip.log").exists()  # the job's log, for `patchbot log`


def test_standin_failing_tests_are_named_with_their_message(standin, tmp_path, sample_repo, checkout):
    standin.scenarios["tip"] = Scenario(
        statuses=["pending", "running", "failed"], jobs={"python": "failed"},
        test_suites=[junit_suite("python", ["test_a"], {"test_search_by_maintainer": "AssertionError: 0 != 2"})])
    config = gitlab_config(tmp_path, sample_repo, standin)
    [result] = [r.result for r in run(config, checkout, tmp_path, suites=("python",))]
    assert result.outcome is Outcome.FAIL
    [failing] = [case for case in result.report.cases if case.outcome is Outcome.FAIL]
    assert (failing.name, failing.message) == ("test.python::test_search_by_maintainer", "AssertionError: 0 != 2")
    assert standin.branches() == []


def test_standin_pipeline_past_its_time_limit_is_canceled_and_reported_as_timeout(standin, tmp_path, sample_repo,
                                                                                   checkout):
    standin.scenarios["tip"] = Scenario(statuses=["running"], jobs={"python": "running"})
    config = gitlab_config(tmp_path, sample_repo, standin)
    config = replace(config, gitlab=replace(config.gitlab, timeout_s=0.5))
    [result] = [r.result for r in run(config, checkout, tmp_path, suites=("python",))]
    assert (result.outcome, result.detail) == (Outcome.TIMEOUT, "the GitLab pipeline 1 was canceled after 0.5 s")
    assert standin.pipelines[1].get("canceled_by_api")
    assert standin.branches() == []


def test_standin_pipeline_canceled_by_someone_is_an_infrastructure_error(standin, tmp_path, sample_repo, checkout):
    standin.scenarios["tip"] = Scenario(statuses=["pending", "canceled"], jobs={"python": "canceled"})
    config = gitlab_config(tmp_path, sample_repo, standin)
    [result] = [r.result for r in run(config, checkout, tmp_path, suites=("python",))]
    assert result.outcome is Outcome.INFRA_ERROR
    assert result.detail == "the GitLab pipeline 1 was canceled (not by patchbot)"
    assert standin.branches() == []


def test_standin_answering_503_is_retried_then_the_run_succeeds(standin, tmp_path, sample_repo, checkout):
    passing(standin, "python")
    standin.faults = 3  # three retries allowed: 0 + 1 + 2 s of backoff
    config = gitlab_config(tmp_path, sample_repo, standin)
    [result] = [r.result for r in run(config, checkout, tmp_path, suites=("python",))]
    assert result.outcome is Outcome.PASS
    assert standin.faults == 0


def test_standin_answering_503_beyond_the_retries_means_try_later_not_a_crash_nor_a_reply(standin, tmp_path,
                                                                                          sample_repo, checkout):
    standin.faults = 1000
    config = gitlab_config(tmp_path, sample_repo, standin)
    with pytest.raises(GitlabUnavailable, match="GitLab: .*503"):
        run(config, checkout, tmp_path, suites=("python",))
    assert standin.branches() == []  # the branch is deleted with git, not through the API
    # Through the pipeline: the request waits for a later try, and nothing goes to the list.
    store = Store(config.db)
    take_in(store, list(source_for(str(SAMPLE_MAILS)).mails())[1])
    counts = run_pending(store, config, config.work_dir, secrets_of(config, config.db))
    assert counts.get("tests that could not run") == 1 and store.replies() == []
    [request] = store.pending_test_requests()
    assert request.attempts == 1 and "503" in request.last_error


def test_standin_job_without_a_report_counts_by_its_status_and_keeps_its_log(standin, tmp_path, sample_repo, checkout):
    standin.scenarios["tip"] = Scenario(statuses=["running", "failed"], jobs={"python": "failed"},
                                        traces={"python": "ImportError: no module named aurweb\n"})
    config = gitlab_config(tmp_path, sample_repo, standin)
    [suite_run] = run(config, checkout, tmp_path, suites=("python",))
    assert (suite_run.result.outcome, suite_run.result.detail) == (Outcome.FAIL, "GitLab job failed, no test report")
    assert suite_run.log.read_text() == "ImportError: no module named aurweb\n"


def test_standin_merge_request_already_open_409_is_updated_not_duplicated(standin, tmp_path, sample_repo, checkout):
    passing(standin, "python")
    standin.merge_requests[1] = {"id": 1001, "iid": 1, "state": "opened", "source_branch": "patchbot/series-7",
                                 "target_branch": "master", "title": "rpc: port search (v1)", "description": "old"}
    config = gitlab_config(tmp_path, sample_repo, standin, extra="merge_requests = true\ncommit_status = true")
    run(config, checkout, tmp_path, suites=("python",))
    assert list(standin.merge_requests) == [1]
    assert standin.merge_requests[1]["title"] == "rpc: port search (v2)"
    assert standin.merge_requests[1]["description"] == "The cover letter.\n"
    assert any(method == "POST" and path.endswith("/merge_requests") for method, path, _ in standin.requests)  # the 409
    # The merge request's branch follows the newest version without a pipeline of its own.
    assert standin.branches() == ["patchbot/series-7"]
    assert [options for ref, _, options in standin.pushes() if ref.endswith("series-7")] == [["ci.skip"]]
    assert len(standin.pipelines) == 1
    [status] = standin.statuses
    assert (status["state"], status["name"]) == ("success", "patchbot")


def test_standin_sees_the_token_only_in_its_header_and_the_logs_never_do(standin, tmp_path, sample_repo, checkout, caplog):
    standin.scenarios["tip"] = Scenario(statuses=["running", "failed"], jobs={"python": "failed"})
    config = gitlab_config(tmp_path, sample_repo, standin)
    with caplog.at_level(logging.DEBUG):
        run(config, checkout, tmp_path, suites=("python",))
        standin.faults = 1000
        with pytest.raises(GitlabUnavailable):
            run(config, checkout, tmp_path, suites=("python",))
    assert all(headers.get("PRIVATE-TOKEN") == standin.token for _, _, headers in standin.requests)
    assert standin.token not in caplog.text


def test_the_token_file_is_hidden_from_the_sandbox(standin, tmp_path, sample_repo):
    token_file = tmp_path / "gitlab-token"
    token_file.write_text(standin.token)
    config = gitlab_config(tmp_path, sample_repo, standin)
    config = replace(config, gitlab=replace(config.gitlab, token_env=None, token_file=token_file))
    assert token_file in secrets_of(config, tmp_path / "p.db")


@pytest.mark.skipif(bool(sandbox_available()), reason="no sandbox here")
def test_standin_end_to_end_the_reply_names_the_new_failure_with_the_same_templates(standin, tmp_path, sample_repo):
    """A Python change: python fails one test on GitLab that passes on the base's pipeline."""
    standin.scenarios["tip"] = Scenario(
        statuses=["created", "running", "failed"], jobs={"python": "failed", "parity": "success"},
        test_suites=[junit_suite("python", ["test_info_single"], {"test_search_by_maintainer": "assert 0 == 2"}),
                     junit_suite("parity", ["test_same_answers"])])
    standin.scenarios["base"] = Scenario(
        statuses=["running", "success"], jobs={"python": "success"},
        test_suites=[junit_suite("python", ["test_info_single", "test_search_by_maintainer"])])
    mbox = tmp_path / "replies.mbox"
    config = gitlab_config(tmp_path, sample_repo, standin)
    config = replace(config, smtp=replace(config.smtp, dry_run_mbox=mbox))
    store = Store(config.db)
    take_in(store, list(source_for(str(SAMPLE_MAILS)).mails())[1])  # rpc: port search by maintainer to Python
    run_pending(store, config, config.work_dir, secrets_of(config, config.db))
    [reply] = [email.message_from_bytes(item.data, policy=default) for item in store.replies()]
    body = reply.get_content().replace("\r\n", "\n")
    assert "1 new failure" in body
    assert "== python: new failure; passes on master ==\n" in body and "::test_search_by_maintainer\n" in body, body
    assert "\n    assert 0 == 2" in body
    assert "python     FAIL    1 new failure of 2" in body and "parity     PASS    1 passed" in body
    assert sorted(p["ref"] for p in standin.pipelines.values()) == ["patchbot/1-v1", "patchbot/1-v1-base"]
    assert standin.branches() == []


def test_standin_tap_suite_without_a_junit_report_is_read_from_its_job_log(standin, tmp_path, sample_repo, checkout):
    """The PHP suite prints TAP; a pipeline that publishes no report for it still has its log."""
    log = ("\x1b[0Ksection_start:1700000000:step_script\r\x1b[0K\x1b[32;1m$ php test/php/run.php\x1b[0;m\n"
           "1..3\nok 1 - info of one package\nnot ok 2 - search by maintainer\n#   got 0, expected 2\n"
           "ok 3 - suggest\n\x1b[0Ksection_end:1700000001:step_script\r\x1b[0K\n")
    standin.scenarios["tip"] = Scenario(statuses=["running", "failed"], jobs={"php": "failed"}, traces={"php": log})
    config = gitlab_config(tmp_path, sample_repo, standin)
    [result] = [r.result for r in run(config, checkout, tmp_path, suites=("php",))]
    assert result.outcome is Outcome.FAIL and result.detail == "GitLab job failed, TAP read from its log"
    assert [(case.name, case.outcome) for case in result.report.cases] == [
        ("info of one package", Outcome.PASS), ("search by maintainer", Outcome.FAIL), ("suggest", Outcome.PASS)]


@pytest.mark.skipif(bool(sandbox_available()), reason="no sandbox here")
def test_a_token_in_patchbots_environment_does_not_reach_a_local_sandbox(tmp_path, monkeypatch):
    from patchbot.testing.executors.local import run_suite
    from patchbot.config.records import SuiteConfig

    monkeypatch.setenv(TOKEN_ENV, "glpat-secret-never-inside")
    config = load_config(write_sample_config(tmp_path / "c.toml", tmp_path, tmp_path / "work", tmp_path / "p.db"))
    (tmp_path / "tree").mkdir()
    suite_run = run_suite(SuiteConfig("env", "env; cat /proc/self/environ", ("*",)),
                          Workspace(tmp_path / "tree", config, tmp_path / "logs", {}, (), "tip"))
    assert suite_run.result.outcome is Outcome.PASS
    assert "glpat-secret-never-inside" not in suite_run.log.read_text()
