"""The configurations shipped in deploy/ load and say what their comments promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from patchbot.config.load import load_config
from patchbot.testing.plan import matches, plan_suites

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PINNED = DEPLOY / "aurweb" / "pinned-requirements"

# Paths of aurweb's tree in each era that the suites' `requires` (paths and globs) look for (from its history).
MASTER_2020 = {"test/sharness.sh", "test/t1100-git-auth.t", "web/html/index.php", "web/lib/aur.inc.php"}  # c4f4ac51, 2020-08-27
MASTER_2021 = MASTER_2020 | {"aurweb/spawn.py", "aurweb/asgi.py"}  # 5be07a8a, 2021-02-20
PU_2021 = MASTER_2021 | {"test/test_exceptions.py"}  # 4b760968, 2021-06-05
PYTHON_ONLY_2023 = PU_2021 - {"web/html/index.php", "web/lib/aur.inc.php"}  # 8ca63075, 2023-04-28: PHP removed


def _suites(paths: list[str], tree: set[str]) -> list[str]:
    def present(required: str) -> bool:
        return any(matches(path, [required]) for path in tree)
    return [suite.name for suite in plan_suites(paths, load_config(DEPLOY / "aurweb.toml"), present).run]


def test_aurweb_config_is_valid_and_routes_by_stack():
    config = load_config(DEPLOY / "aurweb.toml")
    assert config.repository.tag_branches["pu"] == "pu"
    assert _suites(["web/html/rpc.php"], PU_2021) == ["php-lint", "smoke"]
    assert _suites(["aurweb/rpc.py"], PU_2021) == ["sharness", "pytest", "smoke"]
    assert _suites(["doc/rpc.txt", "po/de.po"], PU_2021) == []
    # Keyed by what pinned-requirements reads: not pyproject.toml, whose version changed weekly in 2022.
    assert config.environments["venv"].network and config.environments["venv"].key_files == ("requirements.txt", "poetry.lock")


@pytest.mark.parametrize("schema_path", ["schema/aur-schema.sql", "aurweb/schema.py", "migrations/versions/f47cad5d6d03_initial_revision.py"])
def test_aurweb_schema_change_runs_both_stacks_in_every_era(schema_path):
    assert _suites([schema_path], MASTER_2020) == ["sharness", "php-lint"]
    assert _suites([schema_path], PU_2021) == ["sharness", "pytest", "php-lint", "smoke"]


def test_aurweb_pytest_runs_wherever_test_files_exist_without_conftest():
    assert "pytest" not in _suites(["aurweb/scripts/notify.py"], MASTER_2021)
    assert "pytest" in _suites(["aurweb/scripts/notify.py"], PU_2021)  # no test/conftest.py until 2021-11-17
    assert "smoke" not in _suites(["web/html/index.php"], MASTER_2020)  # aurweb.spawn came 2021-02-20
    # Any test_*.py counts, not one named file: a tree with another one still runs pytest.
    assert "pytest" in _suites(["aurweb/rpc.py"], MASTER_2021 | {"test/test_popupdate.py"})
    assert "pytest" not in _suites(["aurweb/rpc.py"], MASTER_2021 | {"test/conftest.py", "test/README.md"})


def test_aurweb_dependency_files_run_the_python_suites():
    # 512ba023 (2022-11-23) changed only these two and broke the route tests 1216399d fixed.
    assert _suites(["poetry.lock", "pyproject.toml"], PU_2021) == ["sharness", "pytest", "smoke"]
    assert _suites(["pytest.ini"], PU_2021) == ["sharness", "pytest", "smoke"]


def test_aurweb_php_suites_end_with_the_php_files():
    assert _suites(["web/html/index.php", "aurweb/rpc.py"], PYTHON_ONLY_2023) == ["sharness", "pytest"]
    assert "php-lint" in _suites(["web/lib/aur.inc.php"], {"web/lib/aur.inc.php"})  # any PHP file under web/


def test_aurweb_environment_names_its_pinned_files_and_they_exist():
    venv = load_config(DEPLOY / "aurweb.toml").environments["venv"]
    assert {path.name for path in venv.pinned_files} == {"pinned-requirements", "requirements-2020.txt", "python311-overrides.txt"}
    assert '"$PATCHBOT_PINNED/pinned-requirements"' in venv.command


def _pins(tree: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, str(PINNED), str(tree)], capture_output=True, text=True, check=True).stdout
    return dict(line.split("==") for line in out.splitlines())


def test_pinned_requirements_follow_the_trees_layout(tmp_path):
    # setup.py alone (2020): the shipped set, with the Python 3.11 replacements applied.
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup(name='aurweb')\n")
    pins = _pins(tmp_path)
    assert pins["sqlalchemy"] == "1.3.23" and pins["pyalpm"] == "0.10.6" and pins["lxml"] == "4.9.1"
    assert "typing" not in pins  # a backport that only shadows the standard library
    # requirements.txt (2021-08): its pins, plus what pacman used to provide.
    (tmp_path / "requirements.txt").write_text("# General\nfastapi==0.66.0\norjson==3.6.3\nSQLAlchemy==1.3.23\n")
    assert _pins(tmp_path) == {"fastapi": "0.66.0", "orjson": "3.7.12", "sqlalchemy": "1.3.23",
                               "pyalpm": "0.10.6", "srcinfo": "0.0.8", "parse": "1.19.0"}
    # poetry.lock (2021-09 on) wins over a requirements.txt left beside it.
    (tmp_path / "poetry.lock").write_text('[[package]]\nname = "greenlet"\nversion = "1.1.2"\n\n'
                                          '[[package]]\nname = "Jinja2"\nversion = "3.0.1"\n')
    assert _pins(tmp_path) == {"greenlet": "1.1.3", "jinja2": "3.0.1", "pyalpm": "0.10.6", "srcinfo": "0.0.8",
                                "parse": "1.19.0"}


def test_pinned_requirements_never_lower_a_newer_pin(tmp_path):
    # A lock of late 2022 (512ba023^): newer than every Python 3.11 replacement, kept as it is.
    (tmp_path / "poetry.lock").write_text('[[package]]\nname = "greenlet"\nversion = "2.0.1"\n\n'
                                          '[[package]]\nname = "pydantic"\nversion = "1.10.2"\n\n'
                                          '[[package]]\nname = "pygit2"\nversion = "1.7.2"\n')
    pins = _pins(tmp_path)
    assert pins["greenlet"] == "2.0.1" and pins["pydantic"] == "1.10.2"  # not 1.1.3, 1.10.0
    assert pins["pygit2"] == "1.10.1"  # 1.7.2 is older: raised


def test_pinned_requirements_refuse_a_line_that_is_not_a_pin(tmp_path):
    (tmp_path / "requirements.txt").write_text("fastapi>=0.66\n")
    result = subprocess.run([sys.executable, str(PINNED), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and "not a pin: 'fastapi>=0.66'" in result.stderr


@pytest.mark.parametrize("suite", ["pytest", "smoke"])
def test_aurweb_suites_without_mariadb_are_the_machines_failure_not_a_verdict(tmp_path, suite):
    """Trees of 2022 need MariaDB (conftest.py, spawn's :8002 front); without it the command
    stops before any test with exit 127, which patchbot reads as the machine's failure."""
    from patchbot.testing.executors.local import CANNOT_START

    tree = tmp_path / "tree"
    for name, text in {"conf/config.dev": "[database]\nbackend = mysql\nname = aurweb\nsocket = /x\n",
                       "conf/config.defaults": "", "test/conftest.py": "conn.execute(f'CREATE DATABASE {dbname}')\n",
                       "aurweb/spawn.py": "FASTAPI_NGINX_PORT = 8002\n"}.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    command = load_config(DEPLOY / "aurweb.toml").suites[suite].command.replace("/usr/sbin/mariadbd", str(tmp_path / "mariadbd"))
    result = subprocess.run(["/bin/sh", "-c", command], cwd=tree, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PATCHBOT_ENV": str(tmp_path / "env")})
    assert result.returncode == 127 and 127 in CANNOT_START
    assert "patchbot: cannot judge: " in result.stdout and f"{tmp_path / 'mariadbd'} is not installed" in result.stdout
    assert not (tree / "test-results").exists() and "Traceback" not in result.stderr

