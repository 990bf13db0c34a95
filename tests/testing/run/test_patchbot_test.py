"""`patchbot test` on the sample dual-stack project: real git, real PHP and pytest suites, bwrap."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Contributor

from patchbot.demo.sample import write_sample_config

@pytest.fixture
def upstream(sample_repo, tmp_path):
    """The project's own repository for this test, where maintainers push."""
    return Contributor(sample_repo, tmp_path / "upstream")


@pytest.fixture
def bot(upstream, tmp_path):
    config = write_sample_config(tmp_path / "patchbot.toml", upstream.path, tmp_path / "work", tmp_path / "patchbot.db")

    def run(*args: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args],
                                capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout) if "--json" in args else result.stdout.decode()

    return run


@pytest.fixture
def contributor(upstream, tmp_path):
    return Contributor(upstream.path, tmp_path / "contributor")


def submit(bot, contributor, tmp_path, count: int) -> dict:
    mbox = contributor.format_patches(count, tmp_path / "series.mbox")
    bot("ingest", str(mbox))
    series = bot("series", "list", "--json")[-1]
    return bot("test", str(series["id"]), "--json")


def suite_names(result):
    return [suite["name"] for suite in result["suites"]]


def test_php_only_change_runs_php_and_parity(bot, contributor, tmp_path):
    rpc = (contributor.path / "web/lib/rpc.php").read_text()
    contributor.commit("rpc: note where the fields come from", {"web/lib/rpc.php": rpc + "\n// Fields: see schema/schema.sql.\n"})
    result = submit(bot, contributor, tmp_path, 1)
    assert result["applied"] and result["stacks"] == ["php"]
    assert suite_names(result) == ["php", "parity"]


def test_python_change_breaking_a_test_is_a_new_failure(bot, contributor, tmp_path):
    contributor.commit("rpc: sort search results by popularity", contributor.replace("aurweb/rpc.py", "WHERE {where} ORDER BY p.Name", "WHERE {where} ORDER BY p.Name DESC"))
    result = submit(bot, contributor, tmp_path, 1)
    assert result["stacks"] == ["python"] and suite_names(result) == ["python", "parity"]
    python = result["suites"][0]
    assert python["status"] == "fail" and python["new_failures"], python


def test_schema_change_runs_every_suite(bot, contributor, tmp_path):
    contributor.commit("schema: document packages", {"schema/schema.sql": (contributor.path / "schema/schema.sql").read_text() + "\n-- packages of the AUR\n"})
    result = submit(bot, contributor, tmp_path, 1)
    assert result["stacks"] == ["php", "python"]
    assert suite_names(result) == ["php", "python", "parity"]
    assert all(suite["status"] == "pass" for suite in result["suites"]), result["suites"]


def test_a_test_already_failing_on_the_base_is_preexisting(bot, upstream, tmp_path):
    # Upstream broke a test before the series came (as offline aurweb's DNS checks did).
    upstream.commit("test: expect a fifth sample package", upstream.replace(
        "test/python/test_rpc_search.py", "def test_", "def test_upstream_broke_this():\n    assert 4 == 5\n\n\ndef test_"))
    contributor = Contributor(upstream.path, tmp_path / "late-contributor")
    contributor.commit("rpc: comment the search", contributor.replace("aurweb/rpc.py", "def ", "# The search of the RPC.\ndef "))
    result = submit(bot, contributor, tmp_path, 1)
    python = result["suites"][0]
    assert python["name"] == "python" and python["status"] == "pass", python
    assert python["preexisting_failures"] == ["test.python.test_rpc_search::test_upstream_broke_this"]
    assert python["new_failures"] == [] and python["base_status"] == "fail"


def test_a_second_patch_that_does_not_apply_is_named(bot, upstream, contributor, tmp_path):
    contributor.commit("schema: comment", {"schema/schema.sql": (contributor.path / "schema/schema.sql").read_text() + "-- one\n"})
    contributor.commit("rpc: comment the info type", contributor.replace("aurweb/rpc.py", "def ", "# The info type.\ndef "))
    upstream.commit("rpc: comment first", upstream.replace("aurweb/rpc.py", "def ", "# Upstream's comment.\ndef "))
    result = submit(bot, contributor, tmp_path, 2)
    assert not result["applied"] and result["suites"] == []
    assert (result["failed_patch"], result["failed_total"]) == (2, 2)
    assert [conflict["path"] for conflict in result["conflicts"]] == ["aurweb/rpc.py"]
    assert result["base_behind_tip"] == 0
    text = bot("series", "show", str(result["series"]))
    assert "did not apply" in text and "patch 2/2" in text and "aurweb/rpc.py" in text
