"""deploy/ is what an administrator installs: its files must load and agree with each other
and with what README.md's "Running as a service" tells the administrator."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from patchbot.config.load import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Debian's Postfix runs its lmtp client with this as its working directory (and chroot).
POSTFIX_QUEUE_DIRECTORY = Path("/var/spool/postfix")


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "patchbot.service")
    return parser["Service"]


def readme_service_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running as a service")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


@pytest.mark.parametrize("name", sorted(path.name for path in DEPLOY.glob("*.toml")))
def test_every_example_config_loads(name):
    load_config(DEPLOY / name)


@pytest.mark.parametrize("example, source", [("imap.example.toml", "imap"), ("maildir.example.toml", "maildir")])
def test_a_source_example_takes_the_place_of_lmtp_in_the_aurweb_config(tmp_path, example, source):
    aurweb = (DEPLOY / "aurweb.toml").read_text()
    lmtp_table = re.search(r"^\[sources\.lmtp\]\n(?:[^\[\n].*\n)*", aurweb, re.MULTILINE).group(0)
    merged = tmp_path / "patchbot.toml"
    merged.write_text(aurweb.replace(lmtp_table, (DEPLOY / example).read_text()))
    sources = load_config(merged).sources
    assert [name for name in ("lmtp", "maildir", "imap") if getattr(sources, name)] == [source]


def test_the_unit_runs_serve_with_the_config_the_readme_names():
    argv = shlex.split(service()["ExecStart"])
    assert argv[1:3] == ["serve", "-c"] and Path(argv[0]).name == "patchbot" and len(argv) == 4
    binary, config = argv[0], argv[3]
    guide = readme_service_section()
    assert str(Path(binary).parent.parent) in guide  # the venv the guide installs into
    assert f"patchbot serve -c {config}" in guide
    assert "systemctl enable --now patchbot" in guide and "journalctl -u patchbot" in guide


def test_the_unit_reloads_with_hup_and_drains_on_stop():
    unit = service()
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["KillSignal"] == "SIGTERM"
    # SIGTERM to patchbot alone: control-group would also end the running suites, which then
    # fail with exit code -15, blamed on the patch.
    assert unit["KillMode"] == "mixed"
    assert int(unit["TimeoutStopSec"]) > load_config(DEPLOY / "aurweb.toml").serve.drain_s
    assert {"2", "4"} <= set(unit["RestartPreventExitStatus"].split())  # command line, config


def test_the_unit_leaves_bubblewrap_what_it_needs():
    unit = service()
    for key in ("RestrictNamespaces", "PrivateUsers", "ProcSubset", "PrivateNetwork", "MemoryDenyWriteExecute"):
        assert key not in unit
    assert "@mount" in unit["SystemCallFilter"].split()  # mount, pivot_root, chroot
    assert "AF_NETLINK" in unit["RestrictAddressFamilies"].split()  # the sandbox's loopback
    assert unit["OOMPolicy"] == "continue"  # a suite killed for memory must not stop the service


def test_the_unit_may_write_where_the_aurweb_config_keeps_its_state():
    unit, config = service(), load_config(DEPLOY / "aurweb.toml")
    state = Path("/var/lib") / unit["StateDirectory"]
    assert config.db.is_relative_to(state) and config.work_dir.is_relative_to(state)
    assert unit["WorkingDirectory"] == str(state)


@pytest.mark.parametrize("name", ["aurweb.toml", "lmtp.example.toml"])
def test_postfix_delivers_to_the_socket_the_config_opens_in_the_folder_tmpfiles_makes(name):
    socket = load_config(DEPLOY / name).sources.lmtp.socket
    transport = (DEPLOY / "postfix" / "transport").read_text()
    named = re.search(r"^\S+@\S+\s+lmtp:unix:(\S+)$", transport, re.MULTILINE).group(1)
    assert not named.startswith("/")  # absolute would be read inside the chroot
    assert POSTFIX_QUEUE_DIRECTORY / named == socket
    tmpfiles = (DEPLOY / "patchbot.tmpfiles").read_text()
    assert re.search(rf"^d {re.escape(str(socket.parent))} 0750 patchbot postfix ", tmpfiles, re.MULTILINE)
    writable = [path.lstrip("-") for path in service()["ReadWritePaths"].split()]
    assert str(socket.parent) in writable


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong_with_the_unit_but_the_missing_install():
    result = subprocess.run(["systemd-analyze", "verify", str(DEPLOY / "patchbot.service")],
                            capture_output=True, text=True)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "/opt/patchbot/venv/bin/patchbot is not executable" not in line]
    assert problems == []
