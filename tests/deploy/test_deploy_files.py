"""deploy/ is what an administrator installs: its files must load and agree with each other."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from patchbot.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "patchbot.service")
    return parser


@pytest.mark.parametrize("name", sorted(path.name for path in DEPLOY.glob("*.toml")))
def test_every_example_config_loads(name):
    load_config(DEPLOY / name)


def test_the_unit_runs_serve_reloads_with_hup_and_waits_for_the_drain():
    service = unit()["Service"]
    assert re.fullmatch(r"\S+/patchbot serve -c \S+\.toml", service["ExecStart"])
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    drain = load_config(DEPLOY / "aurweb.toml").serve.drain_s
    assert int(service["TimeoutStopSec"]) > drain
    assert service["RestartPreventExitStatus"] == "4"  # a config error: restarting cannot help
    assert "RestrictNamespaces" not in service and "PrivateUsers" not in service  # bwrap needs them


def test_postfix_delivers_to_the_socket_the_example_config_names_inside_the_folder_tmpfiles_makes():
    socket = load_config(DEPLOY / "lmtp.example.toml").sources.lmtp.socket
    transport = (DEPLOY / "postfix" / "transport").read_text()
    relative = re.search(r"^\S+@\S+\s+lmtp:unix:(\S+)$", transport, re.MULTILINE).group(1)
    assert Path("/var/spool/postfix") / relative == socket  # Postfix's lmtp runs chrooted there
    tmpfiles = (DEPLOY / "patchbot.tmpfiles").read_text()
    assert re.search(rf"^d {socket.parent} 0750 patchbot postfix", tmpfiles, re.MULTILINE)
    assert str(socket.parent) in unit()["Service"]["ReadWritePaths"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong_with_the_unit_but_the_missing_install():
    result = subprocess.run(["systemd-analyze", "verify", str(DEPLOY / "patchbot.service")],
                            capture_output=True, text=True)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "/opt/patchbot/venv/bin/patchbot is not executable" not in line]
    assert problems == []


def test_the_example_gitlab_pipeline_has_a_job_for_every_aurweb_suite_and_junit_where_the_suite_reads_junit():
    text = (DEPLOY / "gitlab-ci.example.yml").read_text()
    jobs = {match.group(1): body for match, body in zip(
        re.finditer(r"^([a-z][\w-]*):\n", text, re.MULTILINE),
        re.split(r"^[a-z][\w-]*:\n", text, flags=re.MULTILINE)[1:])}
    config = load_config(DEPLOY / "aurweb.toml")
    for suite in config.suites.values():
        assert suite.name in jobs, suite.name
        assert ("junit:" in jobs[suite.name]) == (suite.format == "junit"), suite.name
