"""Paths given on the command line (--db, --config, --repo) mean the same whatever the current
folder, and whatever folder git later runs in (issue 14: `patchbot test` with a relative --db
failed "not a git repository" and blamed the patch as not applied)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from patchbot.cli.entry import anchor_paths
from patchbot.cli.parser import build_parser
from patchbot.demo.sample import build_sample_repo, write_sample_config
from patchbot.testing.sandbox import sandbox_available

GIT = ["git", "-c", "user.name=Jane Doe", "-c", "user.email=jane@example.org"]


def patchbot(cwd: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "patchbot", *args], cwd=cwd, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_command_line_paths_are_made_absolute_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = anchor_paths(build_parser().parse_args(["--db", "data/p.db", "-c", "p.toml", "test", "1", "--repo", "../up"]))
    assert args.db == tmp_path / "data/p.db" and args.config == tmp_path / "p.toml"
    assert args.repo == str((tmp_path / "../up").resolve())
    remote = anchor_paths(build_parser().parse_args(["test", "1", "--repo", "https://example.org/aurweb.git"]))
    assert remote.repo == "https://example.org/aurweb.git"


def test_patchbot_test_with_a_relative_db_applies_and_tests(tmp_path):
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    upstream = build_sample_repo(tmp_path / "aurweb")
    (tmp_path / "conf").mkdir()
    (tmp_path / "data").mkdir()
    config = write_sample_config(tmp_path / "conf" / "patchbot.toml", upstream, tmp_path / "unused", tmp_path / "unused.db")
    # No [store] db and no [work] dir: the work folder follows the database given on the command line.
    config.write_text(re.sub(r'(?m)^(db|dir) = ".*"\n', "", config.read_text()))
    clone = tmp_path / "contributor"
    subprocess.run(["git", "clone", "-q", str(upstream), str(clone)], check=True)
    readme = clone / "README.md"
    readme.write_text(readme.read_text() + "\nOne more line.\n")
    subprocess.run([*GIT, "commit", "-q", "-am", "README: one more line"], cwd=clone, check=True)
    mbox = subprocess.run([*GIT, "format-patch", "--stdout", "-1"], cwd=clone, check=True, capture_output=True).stdout
    (tmp_path / "patch.mbox").write_bytes(mbox)

    patchbot(tmp_path, "-c", "conf/patchbot.toml", "--db", "data/patchbot.db", "ingest", "patch.mbox")
    # The same database, named from another folder.
    [series] = json.loads(patchbot(tmp_path / "data", "-c", "../conf/patchbot.toml", "--db", "patchbot.db",
                                   "series", "list", "--json"))
    result = json.loads(patchbot(tmp_path, "-c", "conf/patchbot.toml", "--db", "data/patchbot.db",
                                 "test", str(series["id"]), "--json"))
    assert result["applied"], result
    assert (tmp_path / "data" / "work" / "mirrors").is_dir()
