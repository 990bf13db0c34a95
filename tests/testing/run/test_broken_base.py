"""A suite that cannot vouch says so (issue 12 item 4).

On the real aurweb tree of 2020 an empty venv made 101 of 109 sharness tests fail on
`ModuleNotFoundError` at the base and the tip alike; the reply said "PASS, 101 failing before
too", and a patch that broke t2500 on purpose got PASS. Here the sample project's base is broken
in each way an environment breaks (an import error, a pytest collection error, a command that
is not there, no tests found, most tests failing), a patch breaks a test on top, and the suite
must say "cannot judge: the suite is broken on the base (...)", an INFRA_ERROR, never PASS. A
patch that itself removes a command the suite needs, on a healthy base, is that patch's FAIL.

Real things: the sample project in git, `patchbot ingest` and `patchbot test --json` as
processes, the suites in bwrap, SQLite.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Contributor

from patchbot.demo.sample import write_sample_config

# A TAP suite run by sh: the command-line tools of the tree (as aurweb's sharness tests call
# aurblup, php and git), planned wherever the base has its script.
TOOLS_SUITE = """
[suites.tools]
stacks = ["python"]
command = "sh test/tools.sh"
format = "tap"
timeout = 60
requires = ["test/tools.sh"]
"""
TOOLS_CALLING = """echo 1..1
PATH="$PWD/test/bin:$PATH"
{command} --version >/dev/null && echo "ok 1 - {command} runs"
"""
MANY_FAILING = """import pytest


@pytest.mark.parametrize("number", range(25))
def test_needs_the_network(number):
    assert False, "DNS lookups fail in this environment"
"""

# How the base is broken, per kind: the files upstream commits, the suite that then cannot
# vouch, and what its verdict must name.
BROKEN_BASES = {
    "import-error": (
        {"test/python/conftest.py": "import pytest\n\n\n@pytest.fixture(autouse=True)\ndef orm():\n"
                                    "    import sqlalchemy_not_installed  # noqa: F401 - the venv is empty\n"},
        "python", "import error: No module named 'sqlalchemy_not_installed'"),
    "collection-error": (
        {"test/python/test_models.py": "def test_model(:\n    pass\n"},
        "python", "collection error: pytest could not collect 1 file"),
    "command-not-found": (
        {"test/tools.sh": TOOLS_CALLING.format(command="aurblup")},
        "tools", "missing command: aurblup"),
    "no-tests-found": (
        {"pytest.ini": "[pytest]\npythonpath = .\naddopts = -p no:cacheprovider\npython_files = check_*.py\n"},
        "python", "no tests found: pytest exit 5, no tests collected"),
    "most-tests-failing": (
        {"test/python/test_environment.py": MANY_FAILING},
        "python", "25 failing, 18 passing there"),
}
# The patch: a test that fails whatever the environment.
BREAKS_A_TEST = ("test/python/test_rpc_info.py", "def test_", "def test_broken_by_the_patch():\n    assert 1 == 2\n\n\ndef test_")


class Bot:
    """patchbot's command line on one config and database, testing `upstream`."""

    def __init__(self, upstream: Contributor, tmp_path):
        self.config = write_sample_config(tmp_path / "patchbot.toml", upstream.path, tmp_path / "work",
                                          tmp_path / "patchbot.db")
        self.config.write_text(self.config.read_text() + TOOLS_SUITE)

    def __call__(self, *args: str):
        done = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(self.config), *args], capture_output=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout) if "--json" in args else done.stdout.decode()

    def test_patch(self, contributor: Contributor, mbox) -> dict[str, dict]:
        """Ingest the contributor's newest commit as a patch mail and test it: its suites by name."""
        self("ingest", str(contributor.format_patch(mbox)))
        series = self("series", "list", "--json")[-1]["id"]
        return {suite["name"]: suite for suite in self("test", str(series), "--json")["suites"]}


@pytest.mark.parametrize("kind", list(BROKEN_BASES))
def test_a_suite_broken_on_the_base_cannot_judge_a_patch_that_breaks_a_test(kind, sample_repo, tmp_path):
    edits, suite, why = BROKEN_BASES[kind]
    upstream = Contributor(sample_repo, tmp_path / "upstream")
    upstream.commit(f"break the base: {kind}", edits)
    contributor = Contributor(upstream.path, tmp_path / "contributor")
    contributor.commit("rpc: break info on purpose", contributor.replace(*BREAKS_A_TEST))
    verdict = Bot(upstream, tmp_path).test_patch(contributor, tmp_path / "p.mbox")[suite]
    assert verdict["status"] == "infra-error", verdict
    assert verdict["base_status"] == "fail", "the base must have run"
    assert verdict["detail"].endswith(f"cannot judge: the suite is broken on the base ({why})"), verdict["detail"]
    assert verdict["new_failures"] == []  # nothing is blamed on the patch without a judge


def test_a_patch_that_removes_a_command_on_a_healthy_base_fails(sample_repo, tmp_path):
    """The same exit 127 as a machine without the command, but the base ran it: the patch's."""
    upstream = Contributor(sample_repo, tmp_path / "upstream")
    helper = upstream.path / "test" / "bin" / "aurcheck"
    helper.parent.mkdir(parents=True)
    helper.write_text("#!/bin/sh\necho aurcheck 1.0\n")
    helper.chmod(0o755)
    upstream.commit("test: the tools suite and its helper", {"test/tools.sh": TOOLS_CALLING.format(command="aurcheck")})
    contributor = Contributor(upstream.path, tmp_path / "contributor")
    (contributor.path / "test" / "bin" / "aurcheck").unlink()
    package = contributor.path / "aurweb" / "__init__.py"  # a Python file too: the tools suite runs
    contributor.commit("test: drop aurcheck", {"aurweb/__init__.py": package.read_text() + "# aurcheck is gone\n"})
    tools = Bot(upstream, tmp_path).test_patch(contributor, tmp_path / "p.mbox")["tools"]
    assert (tools["status"], tools["base_status"]) == ("fail", "pass"), tools
    assert tools["new_failures"] == ["test 1"]
    assert "the command was not found (exit code 127)" in tools["detail"] and "cannot judge" not in tools["detail"]
