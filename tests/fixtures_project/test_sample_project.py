"""The sample dual-stack project (fixtures/sample-project): its history builds, its three suites
pass on the last commit, the router falls back to PHP, and a broken function fails the suites."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sample-project"
NOT_IN_REPO = {"make-repo", "SUITES.md"}  # and history/
# As patchbot runs them: no bytecode in the worktree, no pytest plugins of the venv (saves ~1 s).
ENV = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


def _php_problem() -> str | None:
    if shutil.which("php") is None:
        return "php is not installed (Debian: php-cli php-sqlite3)"
    modules = subprocess.run(["php", "-m"], capture_output=True, text=True).stdout.split()
    return None if "sqlite3" in modules else "php has no sqlite3 extension (Debian: php-sqlite3)"


needs_php = pytest.mark.skipif(_php_problem() is not None, reason=str(_php_problem()))


def make_repo(target: Path) -> Path:
    subprocess.run([str(FIXTURE / "make-repo"), str(target)], check=True, capture_output=True,
                   env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"}, timeout=30)
    return target


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("sample") / "repo")


@pytest.fixture
def broken_repo(tmp_path) -> Path:
    """A fresh copy of the project where search orders by ID instead of by name."""
    repo = make_repo(tmp_path / "repo")
    rpc = repo / "aurweb" / "rpc.py"
    text = rpc.read_text()
    assert 'WHERE {where} ORDER BY p.Name", params' in text
    rpc.write_text(text.replace('WHERE {where} ORDER BY p.Name", params', 'WHERE {where} ORDER BY p.ID", params'))
    return repo


def run_suite(repo: Path, *command: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(list(command), cwd=repo, env=ENV, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def pytest_suite(repo: Path, folder: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run one pytest suite with --junitxml; outcome of each test by name ('passed', 'failure'...)."""
    report = repo / "test-results" / f"{folder}.xml"
    proc, elapsed = run_suite(repo, sys.executable, "-m", "pytest", f"test/{folder}", f"--junitxml={report}")
    assert elapsed < 30, f"{folder} suite took {elapsed:.1f} s"  # ~1-2 s; generous for busy machines
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        children = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = children[0] if children else "passed"
    return proc, outcomes


def test_history_is_reproducible(sample_repo, tmp_path):
    assert git(sample_repo, "symbolic-ref", "HEAD") == "refs/heads/master"
    subjects = git(sample_repo, "log", "--reverse", "--format=%s").splitlines()
    assert len(subjects) == 5
    assert subjects[0].startswith("Add the package RPC interface")
    assert subjects[-1].startswith("Add a front router")
    assert git(sample_repo, "status", "--porcelain") == ""
    again = make_repo(tmp_path / "again")
    assert git(again, "rev-parse", "HEAD") == git(sample_repo, "rev-parse", "HEAD")


def test_last_commit_holds_the_fixture_files(sample_repo):
    expected = sorted(
        str(p.relative_to(FIXTURE)) for p in FIXTURE.rglob("*")
        if p.is_file() and p.parts[len(FIXTURE.parts)] not in NOT_IN_REPO | {"history"}
        and "__pycache__" not in p.parts and "test-results" not in p.parts)
    assert git(sample_repo, "ls-files").splitlines() == expected
    for name in expected:
        assert (sample_repo / name).read_bytes() == (FIXTURE / name).read_bytes(), name


@needs_php
def test_php_suite_passes_with_tap(sample_repo):
    proc, elapsed = run_suite(sample_repo, "php", "test/php/run.php", "--junit", "test-results/php.xml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 30
    lines = proc.stdout.splitlines()
    plan = next(line for line in lines if re.fullmatch(r"1\.\.\d+", line))
    results = [line for line in lines if re.match(r"(not )?ok \d+ - ", line)]
    assert int(plan[3:]) == len(results) >= 10
    assert all(line.startswith("ok ") for line in results)
    junit = ET.parse(sample_repo / "test-results" / "php.xml").getroot().find("testsuite")
    assert (junit.get("tests"), junit.get("failures")) == (str(len(results)), "0")


@needs_php
def test_php_suite_reports_a_broken_function(tmp_path):
    repo = make_repo(tmp_path / "repo")
    lib = repo / "web" / "lib" / "rpc.php"
    lib.write_text(lib.read_text().replace("LIMIT 20", "LIMIT 1"))
    proc, _ = run_suite(repo, "php", "test/php/run.php")
    assert proc.returncode == 1
    assert re.search(r"^not ok \d+ - test_suggest_prefix\n  ---\n  message: \"p\"\n  expected: ", proc.stdout, re.M)
    assert "# 11 passed, 1 failed" in proc.stdout


def test_python_suite_passes(sample_repo):
    proc, outcomes = pytest_suite(sample_repo, "python")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(outcomes) >= 15 and set(outcomes.values()) == {"passed"}


def test_python_suite_fails_on_a_broken_function(broken_repo):
    proc, outcomes = pytest_suite(broken_repo, "python")
    assert proc.returncode == 1
    assert {name for name, outcome in outcomes.items() if outcome != "passed"} == {
        "test_search_name_and_description"}


@needs_php
def test_parity_suite_passes_and_skips_what_is_not_ported(sample_repo):
    proc, outcomes = pytest_suite(sample_repo, "parity")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    skipped = {name for name, outcome in outcomes.items() if outcome == "skipped"}
    assert skipped == {"test_same_answer[search-by-maintainer]", "test_same_answer[suggest]"}
    assert list(outcomes.values()).count("passed") >= 15 and "failure" not in outcomes.values()
    assert "not ported yet" in (sample_repo / "test-results" / "parity.xml").read_text()


@needs_php
def test_parity_suite_catches_a_difference(broken_repo):
    proc, outcomes = pytest_suite(broken_repo, "parity")
    assert proc.returncode == 1
    assert {name for name, outcome in outcomes.items() if outcome == "failure"} == {
        "test_same_answer[search-name-desc]"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str) -> tuple[int, str | None, bytes]:
    try:
        with urlopen(url, timeout=5) as response:
            return response.status, response.headers["X-Backend"], response.read()
    except HTTPError as err:
        with err:
            return err.code, err.headers["X-Backend"], err.read()


@needs_php
def test_router_falls_back_to_php_on_404(sample_repo):
    php, python, front = free_port(), free_port(), free_port()
    commands = [
        ["php", "-S", f"127.0.0.1:{php}", "-t", "web/html", "web/html/index.php"],
        [sys.executable, "-m", "aurweb.server", "--port", str(python)],
        [sys.executable, "-m", "aurweb.router", "--port", str(front),
         "--python", f"http://127.0.0.1:{python}", "--php", f"http://127.0.0.1:{php}"],
    ]
    procs = [subprocess.Popen(cmd, cwd=sample_repo, env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for cmd in commands]
    try:
        base = f"http://127.0.0.1:{front}"
        deadline = time.monotonic() + 10
        while True:  # the router answers 502 until both backends are up
            try:
                if http_get(base + "/rpc/?v=5&type=info")[0] == 200 and http_get(base + "/")[0] == 200:
                    break
            except (URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "the router and its backends did not start"
            time.sleep(0.05)

        status, backend, body = http_get(base + "/rpc/?v=5&type=info&arg[]=cower-ng")
        assert (status, backend) == (200, "python")
        assert json.loads(body)["results"][0]["Name"] == "cower-ng"

        status, backend, body = http_get(base + "/rpc/?v=5&type=suggest&arg=py")
        assert (status, backend, json.loads(body)) == (200, "php", ["python-fixture"])

        status, backend, body = http_get(base + "/rpc/?v=5&type=search&by=maintainer&arg=marc")
        assert (status, backend) == (200, "php")
        assert [r["Name"] for r in json.loads(body)["results"]] == ["pkgstats-lite", "python-fixture"]

        assert http_get(base + "/")[:2] == (200, "php")
        assert http_get(base + "/no/such/page")[:2] == (404, "php")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
