"""Which stacks a change touches and which suites follow, as the aurweb-era rules say."""

from __future__ import annotations

import pytest

from patchbot.config.records import Config, SuiteConfig
from patchbot.testing.plan import matches, plan_suites, stacks_touched

CONFIG = Config(
    stacks={"php": ("web/**", "**/*.php"), "python": ("aurweb/**", "templates/**", "migrations/**", "**/*.py")},
    shared_paths=("schema/**", "conf/**"),
    ignored_paths=("doc/**", "po/**", "upgrading/**"),
    suites={
        "php": SuiteConfig("php", "php test/php/run.php", ("php",), format="tap"),
        "python": SuiteConfig("python", "pytest", ("python",), requires=("test/python",)),
        "parity": SuiteConfig("parity", "pytest test/parity", ("php", "python")),
        "lint": SuiteConfig("lint", "true", (), always=True),
    },
)


@pytest.mark.parametrize("path, pattern, expected", [
    ("web/html/rpc.php", "web/**", True),
    ("web", "web/**", False),
    ("lib/x.php", "**/*.php", True),
    ("x.php", "**/*.php", True),
    ("aurweb/rpc.py", "*.py", False),
    ("aurweb/rpc.py", "aurweb/*.py", True),
    ("aurweb/a/b.py", "aurweb/*.py", False),
    ("schema/schema.sql", "schema/**", True),
])
def test_globs(path, pattern, expected):
    assert matches(path, [pattern]) is expected


@pytest.mark.parametrize("paths, stacks", [
    (["web/html/rpc.php"], {"php"}),
    (["aurweb/rpc.py"], {"python"}),
    (["lib/tool.php", "scripts/x.py"], {"php", "python"}),
    (["schema/schema.sql"], {"php", "python"}),
    (["doc/rpc.txt"], set()),
    (["doc/example.py"], set()),  # ignored wins over the *.py rule
    (["README"], set()),
])
def test_stacks_touched(paths, stacks):
    assert stacks_touched(paths, CONFIG) == stacks


def names(plan):
    return [suite.name for suite in plan.run]


def test_php_only_change_runs_php_parity_and_always_suites():
    assert names(plan_suites(["web/html/rpc.php"], CONFIG, lambda p: True)) == ["php", "parity", "lint"]


def test_python_only_change_runs_python_parity_and_always_suites():
    assert names(plan_suites(["aurweb/rpc.py"], CONFIG, lambda p: True)) == ["python", "parity", "lint"]


def test_schema_change_runs_everything():
    assert names(plan_suites(["schema/schema.sql"], CONFIG, lambda p: True)) == ["php", "python", "parity", "lint"]


def test_a_suite_whose_files_the_base_lacks_is_left_out_with_the_reason():
    plan = plan_suites(["aurweb/rpc.py"], CONFIG, lambda path: path != "test/python")
    assert names(plan) == ["parity", "lint"]
    assert ("python", "the base has no test/python") in plan.left_out
