"""`patchbot serve` as a real process on the sample project, fed over real LMTP, replying to a
real SMTP server on loopback: what the service tests and the crash test drive."""

from __future__ import annotations

import email
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.policy import default
from pathlib import Path

import pytest

from patchbot.demo.run import CapturingHandler, free_port, smtp_server
from patchbot.demo.sample import SAMPLE_MAILS, build_sample_repo, write_sample_config
from patchbot.testing.sandbox import sandbox_available
from patchbot.sources.files import source_for


# Fixtures of the tests that run the service (a test module imports them by name).
@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory):
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "aurweb")


@pytest.fixture
def smtp():
    handler = CapturingHandler()
    with smtp_server(handler) as port:
        yield handler, port


def sample_mails() -> list[bytes]:
    """The sample aur-dev mails, in the order the list delivered them."""
    return [raw.data for raw in source_for(str(SAMPLE_MAILS)).mails()]


class ServiceUnderTest:
    """One configuration and database; `start` runs `patchbot serve` on them, again after a kill."""

    def __init__(self, folder: Path, repo: Path, smtp_port: int, extra_config: str = "", lmtp_port: int | None = None,
                 sources: str | None = None):
        """`sources`: the [sources.*] tables; by default LMTP on a free port of 127.0.0.1."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.lmtp_port = lmtp_port or free_port()
        self.db = folder / "patchbot.db"
        self.config = write_sample_config(folder / "patchbot.toml", repo, folder / "work", self.db, smtp_port)
        if sources is None:
            sources = f"[sources.lmtp]\nhost = \"127.0.0.1\"\nport = {self.lmtp_port}\n"
        self.listens = "[sources.lmtp]" in sources and "socket =" not in sources  # TCP: wait for the port
        with self.config.open("a") as config:
            config.write(f"\n{sources}\n[serve]\npoll = 0.5\n{extra_config}\n")
        self.log = folder / "serve.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        log = self.log.open("ab")
        start_of_log = log.tell()
        self.process = subprocess.Popen([sys.executable, "-m", "patchbot", "serve", "-c", str(self.config)],
                                        stdout=log, stderr=log, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"patchbot serve exited with {self.process.returncode}:\n{self.log_text()}")
            if not self.listens and "serve: started" in self.log_text()[start_of_log:]:
                return
            try:
                if self.listens:
                    socket.create_connection(("127.0.0.1", self.lmtp_port), timeout=1).close()
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"patchbot serve did not listen within {timeout} s:\n{self.log_text()}")

    def deliver(self, data: bytes) -> None:
        """Deliver as an MTA does; raises unless the service answered 250."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as client:
            client.sendmail("aur-dev-bounces@lists.archlinux.org", ["patchbot@patchbot.example.org"], data)

    def signal(self, number: int) -> None:
        os.kill(self.process.pid, number)

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, and the exit code once it drained."""
        self.signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def patchbot(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "patchbot", "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=60)


def series_tags(handler: CapturingHandler) -> list[str]:
    """The X-Patchbot-Series of every captured mail that answers a series version."""
    return [str(message["X-Patchbot-Series"]) for message in parsed(handler) if message["X-Patchbot-Series"] is not None]


def parsed(handler: CapturingHandler) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(data, policy=default) for _, _, data in handler.messages]


def wait_for(condition, timeout: float, what: str, log: ServiceUnderTest | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log.log_text()}" if log else ""))
