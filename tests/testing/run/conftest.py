"""The sample dual-stack project as a git repository, and a patchbot config that tests it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from patchbot.demo.sample import build_sample_repo, write_sample_config  # noqa: F401 - used by the tests here
from patchbot.testing.sandbox import sandbox_available


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory) -> Path:
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "aurweb")


GIT = ["git", "-c", "user.name=Jane Doe", "-c", "user.email=jane@example.org"]


class Contributor:
    """A clone of the sample project where a contributor commits and formats patches."""

    def __init__(self, upstream: Path, path: Path):
        subprocess.run(["git", "clone", "-q", str(upstream), str(path)], check=True)
        self.path = path

    def commit(self, message: str, edits: dict[str, str]) -> None:
        for name, text in edits.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        subprocess.run([*GIT, "add", "-A"], cwd=self.path, check=True)
        subprocess.run([*GIT, "commit", "-q", "-m", message], cwd=self.path, check=True)

    def replace(self, name: str, old: str, new: str) -> dict[str, str]:
        text = (self.path / name).read_text()
        assert old in text, f"{old!r} not in {name}"
        return {name: text.replace(old, new, 1)}

    def format_patch(self, out: Path) -> Path:
        return self.format_patches(1, out)

    def format_patches(self, count: int, out: Path) -> Path:
        mbox = subprocess.run([*GIT, "format-patch", "--stdout", "--thread", "--numbered" if count > 1 else "--no-numbered",
                               f"-{count}"], cwd=self.path, check=True, capture_output=True).stdout
        out.write_bytes(mbox)
        return out
