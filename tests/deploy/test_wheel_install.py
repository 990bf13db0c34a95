"""What an operator installs (a wheel, or a package built from the sdist) carries every file
patchbot reads at run time: the templates and the sample project and mails `patchbot demo` uses.

Installing the wheel outside the checkout and running `patchbot demo` from it is .ci/wheel-check,
which .ci/test runs after pytest; here only the archives' file lists are checked, so the demo does
not run twice in CI.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_TIME_FOLDERS = ("templates", "fixtures")


def tracked_run_time_files() -> list[str]:
    """Every file git holds under templates/ and fixtures/, as the package names it."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--", *RUN_TIME_FOLDERS],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    assert listed, "git lists no templates or fixtures"
    return [f"patchbot/{name}" for name in listed]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
         "-w", str(folder), str(ROOT)],
        check=True, capture_output=True,
    )
    (path,) = folder.glob("patchbot-*.whl")
    return zipfile.ZipFile(path)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tarfile.TarFile:
    folder = tmp_path_factory.mktemp("sdist")
    # setuptools' own PEP 517 hook, as `python -m build --sdist` calls it (build is not installed).
    subprocess.run(
        [sys.executable, "-c",
         f"from setuptools import build_meta; build_meta.build_sdist({str(folder)!r})"],
        cwd=ROOT, check=True, capture_output=True,
    )
    (path,) = folder.glob("patchbot-*.tar.gz")
    return tarfile.open(path)


def test_wheel_carries_every_template_and_fixture(wheel):
    names = set(wheel.namelist())
    missing = [name for name in tracked_run_time_files() if name not in names]
    assert not missing, f"the wheel lacks {missing}"


def test_wheel_carries_no_leftovers_of_running_the_sample_suites(wheel):
    leftovers = [name for name in wheel.namelist() if "__pycache__" in name and "/fixtures/" in name
                 or "/test-results/" in name]
    assert not leftovers


def test_sdist_carries_every_template_and_fixture(sdist):
    # Members are named patchbot-VERSION/patchbot/templates/...: the package as the wheel has it,
    # so a package built from the sdist (deploy/archlinux/PKGBUILD) carries them too.
    names = {member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()}
    missing = [name for name in tracked_run_time_files() if name not in names]
    assert not missing, f"the sdist lacks {missing}"
    # MANIFEST.in: the examples deploy/archlinux/PKGBUILD installs under /usr/share/doc.
    assert {"deploy/patchbot.service", "deploy/archlinux/PKGBUILD"} <= names


def test_version_is_the_installed_distributions():
    shown = subprocess.run(
        [sys.executable, "-m", "patchbot", "--version"], check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert shown == f"patchbot {metadata.version('patchbot')}"
