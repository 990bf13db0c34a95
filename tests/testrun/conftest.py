"""The sample dual-stack project as a git repository, and a patchbot config that tests it."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchbot.sample import build_sample_repo, write_sample_config  # noqa: F401 - used by the tests here
from patchbot.sandbox import sandbox_available


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory) -> Path:
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "aurweb")
