"""The sample project, its patchbot config and a contributor's clone, for series tests that run
`patchbot` as a process on real patches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from patchbot.demo.sample import build_sample_repo, write_sample_config
from patchbot.testing.sandbox import sandbox_available

GIT = ["git", "-c", "user.name=Jane Doe", "-c", "user.email=jane@example.org"]


def patchbot(config: Path, *args: str, stdin: bytes | None = None) -> dict | None:
    """`patchbot -c CONFIG ARGS...` as a process; its JSON when --json is asked for."""
    result = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args], input=stdin,
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout) if "--json" in args else None


def sample_with_clone(tmp_path: Path) -> tuple[Path, Path]:
    """(config, clone): the sample project and its config under tmp_path, and a clone to commit in."""
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    upstream = build_sample_repo(tmp_path / "aurweb")
    config = write_sample_config(tmp_path / "patchbot.toml", upstream, tmp_path / "work", tmp_path / "patchbot.db")
    clone = tmp_path / "contributor"
    subprocess.run(["git", "clone", "-q", str(upstream), str(clone)], check=True)
    return config, clone
