"""The sample dual-stack project as a git repository, and a patchbot config that tests it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from patchbot.sandbox import sandbox_available

ROOT = Path(__file__).resolve().parents[2]
MAKE_REPO = ROOT / "fixtures" / "sample-project" / "make-repo"

SAMPLE_CONFIG = """\
[store]
db = "{db}"
[work]
dir = "{work}"
parallel = 2
[runner]
path = ["{python_bin}", "/usr/local/bin", "/usr/bin", "/bin"]
expose = ["{python_prefix}", "{venv}"]
[repository]
url = "{repo}"
default_branch = "master"
[stacks.php]
paths = ["web/**", "**/*.php"]
[stacks.python]
paths = ["aurweb/**", "**/*.py"]
[paths]
shared = ["schema/**"]
ignore = ["README.md", "doc/**"]
[suites.php]
stacks = ["php"]
command = "php test/php/run.php"
format = "tap"
timeout = 60
requires = ["test/php/run.php"]
[suites.python]
stacks = ["python"]
command = "PYTHONDONTWRITEBYTECODE=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python3 -m pytest -q -p no:cacheprovider test/python --junitxml=test-results/python.xml"
format = "junit"
result_path = "test-results/python.xml"
timeout = 60
requires = ["test/python"]
[suites.parity]
stacks = ["php", "python"]
command = "PYTHONDONTWRITEBYTECODE=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python3 -m pytest -q -p no:cacheprovider test/parity --junitxml=test-results/parity.xml"
format = "junit"
result_path = "test-results/parity.xml"
timeout = 60
requires = ["test/parity"]
"""


def write_sample_config(path: Path, repo: Path, work: Path, db: Path) -> Path:
    path.write_text(SAMPLE_CONFIG.format(
        db=db, work=work, repo=repo, python_bin=Path(sys.executable).parent,
        python_prefix=Path(sys.base_prefix).resolve(), venv=Path(sys.prefix),
    ))
    return path


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory) -> Path:
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    path = tmp_path_factory.mktemp("sample") / "aurweb"
    subprocess.run([str(MAKE_REPO), str(path)], check=True, capture_output=True)
    return path
