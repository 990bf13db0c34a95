"""The configurations shipped in deploy/ load and say what their comments promise."""

from __future__ import annotations

from pathlib import Path

from patchbot.config import load_config
from patchbot.suites import plan_suites

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_aurweb_config_is_valid_and_routes_by_stack():
    config = load_config(DEPLOY / "aurweb.toml")
    assert config.repository.tag_branches["pu"] == "pu"
    on_pu = lambda path: True  # noqa: E731 - every suite's files exist on pu
    before_port = lambda path: path in ("test/sharness.sh", "web/html/index.php")  # noqa: E731
    assert [s.name for s in plan_suites(["web/html/rpc.php"], config, on_pu).run] == ["php-lint", "smoke"]
    assert [s.name for s in plan_suites(["aurweb/rpc.py"], config, on_pu).run] == ["sharness", "pytest", "smoke"]
    assert [s.name for s in plan_suites(["schema/aur-schema.sql"], config, before_port).run] == ["sharness", "php-lint"]
    assert plan_suites(["doc/rpc.txt", "po/de.po"], config, on_pu).run == ()
    assert config.environments["venv"].network and "setup.py" in config.environments["venv"].key_files
