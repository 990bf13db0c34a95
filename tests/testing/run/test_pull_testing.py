"""`patchbot test` of a pull request (issue 14 item 3): the ref its mail names is fetched from an
allowed source into the mirror, checked against the tip the mail announced, merged onto the base
and tested as a patch series is; what cannot be fetched or merged is said in the reply.

Pull sources here are real local repositories (`[repository] pull_local`), the mails what
`git request-pull` prints or QEMU's `[PULL 0/N]` made with `git format-patch --cover-letter`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import Contributor
from pullmail import PULL_GIT, pull_mail, qemu_pull, request_pull

from patchbot.config.load import load_config
from patchbot.reply.report import result_reply
from patchbot.demo.sample import write_sample_config
from patchbot.store.database import Store


@pytest.fixture
def upstream(sample_repo, tmp_path):
    """The project's repository, which patchbot mirrors."""
    return Contributor(sample_repo, tmp_path / "upstream")


@pytest.fixture
def maintainer(upstream, tmp_path):
    """A sub-maintainer's repository on branch rpc-fixes: where their pull requests are fetched from."""
    clone = Contributor(upstream.path, tmp_path / "maintainer")
    subprocess.run(["git", "checkout", "-q", "-b", "rpc-fixes"], cwd=clone.path, check=True)
    return clone


class Bot:
    """patchbot, as a process, with a config of the sample project that `repository` lines extend."""

    def __init__(self, upstream: Contributor, tmp_path: Path, repository: str = "pull_local = true"):
        self.db = tmp_path / "patchbot.db"
        self.work = tmp_path / "work"
        self.config = write_sample_config(tmp_path / "patchbot.toml", upstream.path, self.work, self.db)
        text = self.config.read_text()
        self.config.write_text(text.replace('default_branch = "master"\n', f'default_branch = "master"\n{repository}\n', 1))
        self.mails = 0

    def __call__(self, *args: str, stdin: bytes | None = None):
        result = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(self.config), *args], input=stdin,
                                capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout) if "--json" in args else result.stdout.decode()

    def test(self, *mails: bytes) -> dict:
        """Take the mails in and test the series the first one starts."""
        for mail in mails:
            self("ingest", "-", stdin=mail)
        series = self("series", "list", "--json")[-1]
        assert series["kind"] == "pull", series
        return self("test", str(series["id"]), "--json")

    def reply(self, result: dict) -> str:
        """The reply to the run, its lines joined (the reply wraps them at its width)."""
        store = Store(self.db)
        try:
            return " ".join(result_reply(store, load_config(self.config), store.series(result["series"]),
                                         store.latest_test_run(result["series"]), 1).body.split())
        finally:
            store.close()

    def pull_refs(self) -> list[str]:
        [mirror] = (self.work / "mirrors").glob("*.git")
        listed = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/patchbot"], cwd=mirror,
                                capture_output=True, text=True, check=True).stdout
        return listed.split()

    def parents(self, commit: str) -> list[str]:
        [mirror] = (self.work / "mirrors").glob("*.git")
        return subprocess.run(["git", "rev-list", "--parents", "-n", "1", commit], cwd=mirror, capture_output=True,
                              text=True, check=True).stdout.split()[1:]


def head_of(repo: Contributor) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo.path, capture_output=True, text=True, check=True).stdout.strip()


def git_pull_mail(maintainer: Contributor, subject: str = "[GIT PULL] aurweb: RPC fixes", since: str = "origin/master",
                  **kwargs) -> bytes:
    text = request_pull(maintainer.path, since, f"file://{maintainer.path}", "rpc-fixes")
    return pull_mail(text, subject, f"pull.{head_of(maintainer)[:12]}@example.org", **kwargs)


def test_a_pull_request_is_merged_on_its_base_and_its_suites_pass(upstream, maintainer, tmp_path):
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    subprocess.run([*PULL_GIT, "tag", "v99.0", "HEAD"], cwd=maintainer.path, check=True)  # must not become the project's
    tip, base = head_of(maintainer), head_of(upstream)
    bot = Bot(upstream, tmp_path)
    result = bot.test(git_pull_mail(maintainer))

    assert result["kind"] == "pull" and result["applied"], result
    assert result["pull"]["tip"] == tip == result["pull"]["announced_tip"] and result["pull"]["not_tested"] is None
    assert result["base"] == base and result["base_reason"] == f"the base {base[:12]} the pull request names"
    assert bot.parents(result["head"]) == [base, tip]  # git merge --no-ff: the pull merged, as its maintainer would
    assert result["stacks"] == ["python"] and [suite["name"] for suite in result["suites"]] == ["python", "parity"]
    assert all(suite["status"] == "pass" for suite in result["suites"]), result["suites"]
    assert bot.pull_refs() == []  # the fetched ref is gone with the run
    [mirror] = (bot.work / "mirrors").glob("*.git")
    assert subprocess.run(["git", "tag", "-l", "v99.0"], cwd=mirror, capture_output=True, text=True).stdout == ""
    assert "This pull request merged cleanly on" in bot.reply(result) and "every suite passed" in bot.reply(result)


def test_a_qemu_pull_cover_is_tested_by_its_pull(upstream, maintainer, tmp_path):
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    maintainer.commit("schema: document packages", {"schema/schema.sql": (maintainer.path / "schema/schema.sql").read_text()
                                                    + "\n-- packages of the AUR\n"})
    mails = qemu_pull(maintainer.path, "origin/master", f"file://{maintainer.path}", "rpc-fixes", "RPC and schema", "qemu")
    bot = Bot(upstream, tmp_path)
    result = bot.test(*mails)

    assert result["applied"] and result["pull"]["tip"] == head_of(maintainer)
    assert result["stacks"] == ["php", "python"] and all(suite["status"] == "pass" for suite in result["suites"])
    shown = bot("series", "show", str(result["series"]), "--json")
    assert [patch["number"] for patch in shown["patches"]] == [1, 2] and shown["complete"]


def test_a_pull_cover_whose_patches_never_come_is_tested_after_the_grace_period(upstream, maintainer, tmp_path):
    """The patches of a [PULL 0/N] are its record; what is tested is the branch its cover names."""
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    cover, *_ = qemu_pull(maintainer.path, "origin/master", f"file://{maintainer.path}", "rpc-fixes", "RPC fixes", "qemu")
    bot = Bot(upstream, tmp_path)
    bot.config.write_text(bot.config.read_text() + "\n[serve]\ngrace = 0.01\n")
    bot("ingest", "-", stdin=cover)
    bot("run")
    store = Store(bot.db)
    try:
        [series] = store.all_series()
        run = store.latest_test_run(series.id)
    finally:
        store.close()
    assert series.kind == "pull" and series.patches == () and run is not None
    assert run.summary["applied"] and run.summary["head"] and run.summary["pull"]["tip"] == head_of(maintainer)


def test_a_pull_that_breaks_a_test_fails_it(upstream, maintainer, tmp_path):
    maintainer.commit("rpc: sort search results by popularity",
                      maintainer.replace("aurweb/rpc.py", "WHERE {where} ORDER BY p.Name", "WHERE {where} ORDER BY p.Name DESC"))
    bot = Bot(upstream, tmp_path)
    result = bot.test(git_pull_mail(maintainer))

    python = result["suites"][0]
    assert result["applied"] and python["name"] == "python" and python["status"] == "fail" and python["new_failures"]
    assert "This pull request merged cleanly on" in bot.reply(result) and "new failure" in bot.reply(result)


def test_a_conflicting_pull_reports_the_conflict(upstream, maintainer, tmp_path):
    # The pull is based on a commit of the maintainer's own tree, which upstream does not have:
    # it is merged onto the default branch, where upstream changed the same line meanwhile.
    maintainer.commit("doc: a note of the maintainer's tree", {"doc/maintainer.md": "fixes go here\n"})
    since = head_of(maintainer)
    maintainer.commit("rpc: sort by name, descending",
                      maintainer.replace("aurweb/rpc.py", "WHERE {where} ORDER BY p.Name", "WHERE {where} ORDER BY p.Name DESC"))
    mail = git_pull_mail(maintainer, since=since)
    upstream.commit("rpc: sort by id", upstream.replace("aurweb/rpc.py", "WHERE {where} ORDER BY p.Name", "WHERE {where} ORDER BY p.ID"))
    bot = Bot(upstream, tmp_path)
    result = bot.test(mail)

    assert not result["applied"] and result["outcome"] == "not-applied"
    assert result["pull"]["announced_base"] == since and result["base_reason"] == "the default branch master"
    assert result["conflicts"] == [{"path": "aurweb/rpc.py", "line": None}] and result["suites"] == []
    reply = bot.reply(result)
    assert "This pull request was not tested: it conflicts with" in reply and "aurweb/rpc.py" in reply
    assert bot.pull_refs() == []


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that counts the connections it is offered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


def test_a_pull_from_a_host_not_allowed_is_not_fetched_and_the_reply_says_why(upstream, maintainer, tmp_path, listener):
    port, accepted = listener
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    text = request_pull(maintainer.path, "origin/master", f"file://{maintainer.path}", "rpc-fixes")
    text = text.replace(f"file://{maintainer.path}", f"https://127.0.0.1:{port}/aurweb.git")
    bot = Bot(upstream, tmp_path, 'pull_hosts = ["gitlab.archlinux.org", "git.kernel.org"]')
    result = bot.test(pull_mail(text, "[GIT PULL] aurweb: RPC fixes", "elsewhere@example.org"))

    assert not result["applied"] and result["pull"]["tip"] is None
    assert result["pull"]["not_tested"] == "pull host 127.0.0.1 is not allowed (operator: [repository] pull_hosts)"
    assert accepted == []  # nothing was asked of that host
    assert ("This pull request was not tested: pull host 127.0.0.1 is not allowed (operator: [repository]"
            " pull_hosts).") in bot.reply(result)


def test_a_local_pull_needs_pull_local(upstream, maintainer, tmp_path):
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    bot = Bot(upstream, tmp_path, 'pull_hosts = ["git.kernel.org"]')
    result = bot.test(git_pull_mail(maintainer))
    assert result["pull"]["not_tested"] == "pulls from local paths are not allowed (operator: [repository] pull_local)"


def test_a_branch_that_moved_since_the_mail_is_said(upstream, maintainer, tmp_path):
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    announced = head_of(maintainer)
    mail = git_pull_mail(maintainer)
    maintainer.commit("rpc: one more thing", maintainer.replace("aurweb/rpc.py", "def ", "# One more.\ndef "))
    bot = Bot(upstream, tmp_path)
    result = bot.test(mail)

    moved = head_of(maintainer)
    assert not result["applied"] and result["pull"]["tip"] == moved and result["pull"]["announced_tip"] == announced
    assert result["pull"]["not_tested"] == f"the branch moved: rpc-fixes is at {moved[:12]}, not at {announced[:12]} as the mail says"
    assert "This pull request was not tested: the branch moved" in bot.reply(result)
    assert bot.pull_refs() == []


def test_a_pull_bigger_than_the_limit_is_refused(upstream, maintainer, tmp_path):
    maintainer.commit("doc: a large drawing", {"doc/drawing.bin": os.urandom(3 * 1024 * 1024).hex()[: 3 * 1024 * 1024]})
    bot = Bot(upstream, tmp_path, "pull_local = true\npull_max_mb = 1")
    result = bot.test(git_pull_mail(maintainer))

    assert result["pull"]["not_tested"] == "fetching it brought more than 1 MB (operator: [repository] pull_max_mb)"
    assert bot.pull_refs() == []


def test_fetching_longer_than_the_time_limit_is_refused(upstream, maintainer, tmp_path):
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    bot = Bot(upstream, tmp_path, "pull_local = true\npull_timeout = 0.001")
    result = bot.test(git_pull_mail(maintainer))

    assert result["pull"]["not_tested"] == "fetching it took longer than 0.001 s (operator: [repository] pull_timeout)"
    [mirror] = (bot.work / "mirrors").glob("*.git")
    assert bot.pull_refs() == [] and not list((mirror / "objects" / "pack").glob("tmp_*"))


VENV = """
[environments.venv]
command = 'echo built > "$PATCHBOT_ENV/label"'
key_files = ["requirements.txt"]
network = true
"""


def test_a_pulls_dependency_files_decide_its_environment_as_a_patchs_do(upstream, maintainer, tmp_path):
    """environments.py compares the key files of the base and of the head: for a pull, the merge."""
    bot = Bot(upstream, tmp_path)
    python = 'result_path = "test-results/python.xml"\n'
    bot.config.write_text(bot.config.read_text().replace(python, python + 'environment = "venv"\n') + VENV)
    maintainer.commit("rpc: say where the search starts", maintainer.replace("aurweb/rpc.py", "def ", "# The search.\ndef "))
    same = bot.test(git_pull_mail(maintainer))
    maintainer.commit("deps: pin what the RPC needs", {"requirements.txt": "requests==2.31.0\n"})
    changed = bot.test(git_pull_mail(maintainer, subject="[GIT PULL] aurweb: RPC fixes and pins"))

    assert [(env["origin"], env["changed"], env["state"]) for env in same["environments"]] == [("base", False, "ready")]
    # Its own files: built, but never with the network (only reviewed or trusted files get it).
    assert [(env["origin"], env["changed"], env["state"]) for env in changed["environments"]] == [("offline", True, "ready")]
    assert changed["applied"] and changed["suites"][0]["status"] == "pass"
