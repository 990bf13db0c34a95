"""A suite's `requires`: literal paths and globs the base tree must have, read from git objects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from gitmail import GIT_ENV

from patchbot.testing.apply import paths_in_tree
from patchbot.config.load import load_config
from patchbot.config.records import ConfigError, Config, SuiteConfig
from patchbot.testing.plan import is_glob, literal_folder, plan_suites


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def history(tmp_path):
    """A bare mirror of a tree that grows as aurweb's did: sharness first, pytest files later."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "master")
    sharness = commit(work, {"test/sharness.sh": "#!/bin/sh\n", "test/t1100-git-auth.t": "ok\n",
                             "web/html/index.php": "<?php\n", "README": "aurweb\n"}, "sharness era")
    pytest_era = commit(work, {"test/test_exceptions.py": "def test_x(): pass\n",
                               "aurweb/routers/deep/page.py": "\n"}, "the first pytest file")
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(mirror))
    return mirror, sharness, pytest_era


@pytest.mark.parametrize("pattern, glob, folder", [
    ("test/test_*.py", True, "test"),
    ("**/*.php", True, ""),
    ("web/html/index.php", False, "web/html"),
    ("aurweb/routers/**", True, "aurweb/routers"),
    ("test/t?100-*.t", True, "test"),
])
def test_a_glob_is_listed_only_in_the_folder_before_its_first_wildcard(pattern, glob, folder):
    assert is_glob(pattern) is glob and literal_folder(pattern) == folder


def test_a_glob_is_present_when_one_path_of_the_base_tree_matches_it(history):
    mirror, sharness, pytest_era = history
    required = ["test/test_*.py", "test/sharness.sh", "**/*.php", "aurweb/**", "test/t*.t", "test/*.sh"]
    assert paths_in_tree(mirror, sharness, required) == {"test/sharness.sh", "**/*.php", "test/t*.t", "test/*.sh"}
    assert paths_in_tree(mirror, pytest_era, required) == set(required)


def test_a_single_star_stays_in_its_folder_and_a_double_star_crosses_folders(history):
    mirror, _, pytest_era = history
    assert paths_in_tree(mirror, pytest_era, ["aurweb/*.py", "aurweb/*/*/page.py", "aurweb/**/page.py", "test/*"]) == {
        "aurweb/*/*/page.py", "aurweb/**/page.py", "test/*"}
    assert paths_in_tree(mirror, pytest_era, ["aurweb/*"]) == {"aurweb/*"}  # a folder matches too, as a literal path does


def test_a_glob_matches_nothing_in_a_tree_without_its_folder_or_at_an_unknown_commit(history):
    mirror, sharness, _ = history
    assert paths_in_tree(mirror, sharness, ["aurweb/**", "templates/*.html"]) == set()
    assert paths_in_tree(mirror, "0" * 40, ["test/*.sh", "test/sharness.sh"]) == set()


def test_a_suite_requiring_a_glob_runs_from_the_commit_that_brings_the_first_match(history):
    mirror, sharness, pytest_era = history
    config = Config(stacks={"python": ("aurweb/**", "test/**")},
                    suites={"pytest": SuiteConfig("pytest", "pytest", ("python",), requires=("test/test_*.py",))})
    for base, expected in ((sharness, []), (pytest_era, ["pytest"])):
        present = paths_in_tree(mirror, base, ["test/test_*.py"])
        plan = plan_suites(["aurweb/rpc.py"], config, present.__contains__)
        assert [suite.name for suite in plan.run] == expected
    assert plan_suites(["aurweb/rpc.py"], config, set().__contains__).left_out == (("pytest", "the base has no test/test_*.py"),)


SUITE = """
[stacks.python]
paths = ["aurweb/**"]
[suites.pytest]
stacks = ["python"]
command = "pytest"
requires = [{requires}]
"""


def test_the_config_takes_globs_in_requires(tmp_path):
    path = tmp_path / "patchbot.toml"
    path.write_text(SUITE.format(requires='"test/test_*.py", "test/sharness.sh"'))
    assert load_config(path).suites["pytest"].requires == ("test/test_*.py", "test/sharness.sh")


@pytest.mark.parametrize("required", ['"/etc/passwd"', '"../outside/*.py"', '"test/../../x"', '""', '"test//x"', '"./test"'])
def test_the_config_refuses_a_required_path_outside_the_tree_naming_the_key(tmp_path, required):
    path = tmp_path / "patchbot.toml"
    path.write_text(SUITE.format(requires=required))
    with pytest.raises(ConfigError, match=r"suites\.pytest\.requires"):
        load_config(path)
