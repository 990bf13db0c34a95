"""Every git of patchbot runs with a HOME and a configuration of patchbot's own making (issue 11
item 11): git used to run with HOME set to the temporary folder, and a `.gitconfig` planted
there (core.hooksPath) ran a hook as the bot's user during `patchbot test`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from patchbot.testing.apply import GitError, git, git_environment, use_git_home
from patchbot.demo.sample import build_sample_repo, write_sample_config

HOOKS = ("post-checkout", "applypatch-msg", "pre-applypatch", "post-applypatch", "post-commit", "pre-commit",
         "reference-transaction", "post-index-change")
GIT = ["git", "-c", "user.name=Mallory", "-c", "user.email=mallory@example.org", "-c", "commit.gpgsign=false"]


def plant_hooks(home: Path, marker: Path) -> None:
    """A .gitconfig (and an XDG one) pointing core.hooksPath at hooks that leave `marker`."""
    hooks = home / "hooks"
    hooks.mkdir(parents=True)
    for name in HOOKS:
        (hooks / name).write_text(f"#!/bin/sh\necho {name} >> {marker}\n")
        (hooks / name).chmod(0o755)
    config = f"[core]\n\thooksPath = {hooks}\n[user]\n\tname = Planted\n"
    (home / ".gitconfig").write_text(config)
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text(config)


def test_attack_11_planted_gitconfig_in_home_and_tmp_runs_no_hook_during_patchbot_test(tmp_path):
    planted = tmp_path / "shared-tmp"  # what the service's HOME and TMPDIR were: anyone could write there
    marker = tmp_path / "hook-ran"
    plant_hooks(planted, marker)
    upstream = build_sample_repo(tmp_path / "aurweb")
    contributor = tmp_path / "contributor"
    subprocess.run(["git", "clone", "-q", str(upstream), str(contributor)], check=True)
    (contributor / "README.md").write_text((contributor / "README.md").read_text() + "\nOne more line.\n")
    subprocess.run([*GIT, "commit", "-q", "-am", "README: one more line"], cwd=contributor, check=True)
    mbox = tmp_path / "series.mbox"
    mbox.write_bytes(subprocess.run([*GIT, "format-patch", "--stdout", "-1"], cwd=contributor, check=True,
                                    capture_output=True).stdout)
    work = tmp_path / "work"
    config = write_sample_config(tmp_path / "patchbot.toml", upstream, work, tmp_path / "patchbot.db")
    env = {**os.environ, "HOME": str(planted), "TMPDIR": str(planted), "XDG_CONFIG_HOME": str(planted / ".config")}

    def bot(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    bot("ingest", str(mbox))
    series = json.loads(bot("series", "list", "--json"))[-1]
    result = json.loads(bot("test", str(series["id"]), "--json"))
    assert result["applied"], result  # git cloned, checked out and ran git am: each a place for a hook
    assert not marker.exists(), f"a planted hook ran: {marker.read_text()}"
    home = work / "git-home"
    info = os.lstat(home)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert "Written by patchbot" in (home / "gitconfig").read_text()


def test_git_reads_no_configuration_but_patchbot_s(tmp_path, monkeypatch):
    planted = tmp_path / "planted"
    plant_hooks(planted, tmp_path / "marker")
    monkeypatch.setenv("HOME", str(planted))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(planted / ".gitconfig"))
    use_git_home(tmp_path / "work")
    env = git_environment()
    assert env["HOME"] == str(tmp_path / "work" / "git-home") and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_CONFIG_GLOBAL"] == str(tmp_path / "work" / "git-home" / "gitconfig")
    shown = git("config", "--show-origin", "--list").stdout.decode()
    assert "Planted" not in shown and str(planted) not in shown
    # Even a repository's own configuration cannot bring a hook back: the command line wins.
    assert git("config", "core.hooksPath").stdout.decode().strip() == "/dev/null"


def test_a_git_home_that_is_not_patchbot_s_own_folder_is_refused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "git-home").symlink_to(tmp_path)
    with pytest.raises(GitError, match="not a folder of patchbot's own"):
        use_git_home(work)


def test_a_git_home_left_open_to_others_is_closed_again(tmp_path):
    (tmp_path / "work" / "git-home").mkdir(parents=True)
    (tmp_path / "work" / "git-home").chmod(0o777)
    home = use_git_home(tmp_path / "work")
    assert stat.S_IMODE(os.lstat(home).st_mode) == 0o700
