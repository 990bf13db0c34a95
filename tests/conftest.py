"""Fixtures shared by every test folder: a git repository to make patch mails from, a store."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitmail import PatchRepo

from patchbot.store.database import Store


@pytest.fixture
def repo(tmp_path: Path) -> PatchRepo:
    path = tmp_path / "repo"
    path.mkdir()
    return PatchRepo(path)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "patchbot.db")
    yield store
    store.close()
