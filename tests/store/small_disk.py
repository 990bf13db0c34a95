"""A real small filesystem for the store's fault tests: a tmpfs of a few megabytes that a test
fills to the last byte, frees again, or whose database file it makes immutable (chattr +i, which
holds for root too, unlike chmod)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT_ONLY = "mounting a tmpfs and chattr +i need root (CI runs as root)"


class SmallDisk:
    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write until the filesystem has no byte left."""
        descriptor = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 4096, 1):
                try:
                    while True:
                        os.write(descriptor, b"\0" * size)
                except OSError as error:
                    assert error.errno == 28, error  # ENOSPC
        finally:
            os.close(descriptor)

    def free(self) -> None:
        self.filler.unlink()

    def empty_the_wal(self, db: Path) -> None:
        """Checkpoint the database and truncate its write-ahead log, as SQLite does when the last
        connection closes: the next commit then needs new room on the disk. (Otherwise a small
        commit may fit in log pages SQLite reuses, and a full disk goes unnoticed.)"""
        connection = sqlite3.connect(db, timeout=30)
        try:
            for _ in range(100):
                busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                time.sleep(0.1)
            raise AssertionError("the write-ahead log could not be truncated")
        finally:
            connection.close()

    def chattr(self, flag: str, path: Path) -> None:
        result = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"chattr {flag} does not work here: {result.stderr.strip()}")


@contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[SmallDisk]:
    """Mount a tmpfs of `size` at `path` for the duration; skips the test where that cannot be done."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_ONLY)
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    disk = SmallDisk(path)
    try:
        yield disk
    finally:
        for entry in path.iterdir():  # an immutable file would outlive the test's clean-up
            subprocess.run(["chattr", "-i", str(entry)], capture_output=True)
        subprocess.run(["umount", "-l", str(path)], check=True)
