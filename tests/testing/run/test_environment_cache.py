"""Base results are keyed by everything that decides them (issue 12 item 5): after the
environment was fixed, a retest still said PASS from a base result kept under a key that did not
include the environment's definition."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Contributor

from patchbot.config.load import load_config
from patchbot.demo.sample import write_sample_config
from patchbot.store.database import Store
from patchbot.testing.run import run_test

ENVIRONMENT = """
[environments.venv]
command = 'echo {label} > "$PATCHBOT_ENV/label"'
key_files = ["requirements.txt"]
"""


@pytest.fixture
def upstream(sample_repo, tmp_path):
    return Contributor(sample_repo, tmp_path / "upstream")


class Bot:
    def __init__(self, upstream: Contributor, tmp_path):
        self.config = write_sample_config(tmp_path / "patchbot.toml", upstream.path, tmp_path / "work", tmp_path / "patchbot.db")
        self.template = self.config.read_text()
        self.work = tmp_path / "work"
        self.configure("first")

    def configure(self, label: str, python_timeout: int = 60) -> None:
        python = 'result_path = "test-results/python.xml"\ntimeout = 60\n'
        assert python in self.template
        text = self.template.replace(python, f'result_path = "test-results/python.xml"\ntimeout = {python_timeout}\n'
                                             'environment = "venv"\n')
        self.config.write_text(text + ENVIRONMENT.format(label=label))

    def __call__(self, *args: str):
        done = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(self.config), *args], capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout) if "--json" in args else done.stdout.decode()

    def base_ran(self, series: int) -> bool:
        """Whether the last test of the series ran the python suite on the base (or took a kept result)."""
        runs = sorted((self.work / "logs").glob(f"series-{series}-*"))
        return (runs[-1] / "python-base.log").exists()


def test_a_changed_environment_command_or_suite_definition_runs_the_base_again(upstream, tmp_path):
    bot = Bot(upstream, tmp_path)
    contributor = Contributor(upstream.path, tmp_path / "contributor")
    contributor.commit("rpc: break info on purpose", contributor.replace(
        "test/python/test_rpc_info.py", "def test_", "def test_broken_by_the_patch():\n    assert 1 == 2\n\n\ndef test_"))
    bot("ingest", str(contributor.format_patch(tmp_path / "series.mbox")))
    series = bot("series", "list", "--json")[-1]["id"]
    first = bot("test", str(series), "--json")
    assert first["suites"][0]["status"] == "fail" and bot.base_ran(series)
    bot("test", str(series), "--json")
    assert not bot.base_ran(series), "the same definitions must reuse the kept base result"
    bot.configure("second")  # the environment's command changed
    again = bot("test", str(series), "--json")
    assert bot.base_ran(series), "a changed environment must run the base again"
    assert again["suites"][0]["new_failures"] == first["suites"][0]["new_failures"]
    bot.configure("second", python_timeout=61)  # the suite's definition changed
    bot("test", str(series), "--json")
    assert bot.base_ran(series), "a changed suite definition must run the base again"
    bot("test", str(series), "--json")
    assert not bot.base_ran(series)
    assert bot("cache", "clear", "--suite", "parity") == "0 kept base results cleared\n"
    assert bot("cache", "clear", "--suite", "python", "--base", first["base"][:10]) == "3 kept base results cleared\n"
    bot("test", str(series), "--json")
    assert bot.base_ran(series), "`patchbot cache clear` must make the base run again"
    # A retest (a maintainer's `patchbot: retest`: the pipeline's requests after the first) runs
    # the base of every failing suite again, kept result or not.
    bot("test", str(series), "--json")
    assert not bot.base_ran(series)
    store = Store(tmp_path / "patchbot.db")
    try:
        run = run_test(store, load_config(bot.config), series, work=bot.work, hidden=(), fresh_base=True)
    finally:
        store.close()
    assert bot.base_ran(series) and run.base["python"].outcome.value == "pass"
