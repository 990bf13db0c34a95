"""The crash test: a burst of 30 mails while `patchbot serve` is SIGKILLed at random moments.

An MTA (here a thread with smtplib.LMTP) delivers single patches, series, re-rolls and
maintainers' commands, retrying each mail until it hears 250, while the service is killed
several times and restarted each time. In the end every series version has exactly one
report, every command exactly one acknowledgement, every delivered mail is in the store, and
no reply reached the SMTP server twice. The figures are printed (run with -s to see them
outside CI's log): mails in, reports out, duplicates, losses.

PATCHBOT_CRASH_SEED picks another schedule of kills; the seed used is printed.
"""

from __future__ import annotations

import os
import random
import re
import smtplib
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from serve_support import ServiceUnderTest, parsed

from patchbot.demo.run import CapturingHandler, smtp_server
from patchbot.demo.sample import build_sample_repo
from patchbot.testing.sandbox import sandbox_available

KILLS = 5
MAINTAINER = "Lukas Fleischer <lukas@example.org>"


class Contributors:
    """Formats patch mails with git from a clone of the sample project, each from master."""

    def __init__(self, upstream: Path, path: Path):
        subprocess.run(["git", "clone", "-q", str(upstream), str(path)], check=True)
        self.path = path

    def _git(self, *args: str, author: str = "Jane Doe <jane@example.org>") -> str:
        name, email = re.match(r"(.*) <(.*)>", author).groups()
        return subprocess.run(["git", "-c", f"user.name={name}", "-c", f"user.email={email}", *args], cwd=self.path,
                              check=True, capture_output=True, text=True).stdout

    def mails(self, author: str, title: str, files: list[tuple[str, str]], version: int = 1) -> list[bytes]:
        """One commit per (path, text), formatted as a series (with a cover letter when > 1)."""
        self._git("checkout", "-q", "-B", "work", "origin/master")
        for index, (path, text) in enumerate(files, 1):
            (self.path / path).parent.mkdir(parents=True, exist_ok=True)
            (self.path / path).write_text(text)
            self._git("add", path)
            subject = title if len(files) == 1 else f"{title}, part {index}"
            self._git("commit", "-q", "-m", subject, author=author)
        options = ["--thread=shallow", f"-v{version}" if version > 1 else "--no-numbered" if len(files) == 1 else "-n"]
        if len(files) > 1:
            options.append("--cover-letter")
        text = self._git("format-patch", "--stdout", *options, f"-{len(files)}", author=author)
        text = text.replace("*** SUBJECT HERE ***", title).replace("*** BLURB HERE ***", f"{title}, in parts.")
        return _split(text)


def _split(mbox: str) -> list[bytes]:
    mails = re.split(r"^From [0-9a-f]{40} .*\n", mbox, flags=re.MULTILINE)
    return [mail.encode() for mail in mails if mail.strip()]


def _message_id(mail: bytes) -> str:
    return re.search(rb"(?im)^message-id:\s*(<[^>]+>)", mail).group(1).decode()


def _command(parent: bytes, number: int, command: str) -> bytes:
    subject = re.search(rb"(?im)^subject:\s*(.*)$", parent).group(1).decode()
    return (f"From: {MAINTAINER}\nTo: aur-dev@lists.archlinux.org\nSubject: Re: {subject}\n"
            f"Message-Id: <command.{number}@example.org>\nIn-Reply-To: {_message_id(parent)}\n"
            f"References: {_message_id(parent)}\nDate: Sat, 28 Nov 2026 12:00:{number:02d} +0000\n\n"
            f"patchbot: {command}\n").encode()


def burst(contributors: Contributors) -> tuple[list[bytes], int]:
    """30 mails in list order, and how many series versions they hold."""
    mails, versions = [], 0

    def add(series: list[bytes]) -> list[bytes]:
        nonlocal versions
        mails.extend(series)
        versions += 1
        return series

    singles = []
    for number in range(1, 9):
        author = f"Contributor {number} <c{number}@example.org>"
        path, text = (f"doc/topic-{number}.md", f"Topic {number}.\n")
        if number == 1:
            path, text = "web/lib/notes.php", "<?php\n// Notes on the PHP side.\n"
        if number == 2:
            path, text = "aurweb/notes.py", '"""Notes on the Python side."""\n'
        singles.append(add(contributors.mails(author, f"doc: describe topic {number}", [(path, text)])))
    for letter in "abc":
        author = f"Series {letter.upper()} <{letter}@example.org>"
        add(contributors.mails(author, f"doc: a guide to {letter}", [(f"doc/{letter}-{n}.md", f"{n}\n") for n in (1, 2, 3)]))
    for number in (3, 4):  # re-rolls of two single patches
        author = f"Contributor {number} <c{number}@example.org>"
        add(contributors.mails(author, f"doc: describe topic {number}", [(f"doc/topic-{number}.md", f"Topic {number}, v2.\n")],
                               version=2))
    add(contributors.mails("Series A <a@example.org>", "doc: a guide to a",
                           [(f"doc/a-{n}.md", f"{n}, v2\n") for n in (1, 2, 3)], version=2))
    for number, (single, command) in enumerate(zip(singles[4:], ("retest", "retest", "status", "help")), 1):
        mails.append(_command(single[0], number, command))
    assert len(mails) == 30, len(mails)
    return mails, versions


class Mta(threading.Thread):
    """Delivers each mail until the service answers 250, as an MTA's queue does."""

    def __init__(self, service: ServiceUnderTest, mails: list[bytes]):
        super().__init__(daemon=True)
        self.service, self.mails, self.attempts = service, mails, 0

    def run(self) -> None:
        for mail in self.mails:
            while True:
                self.attempts += 1
                try:
                    self.service.deliver(mail)
                    break
                except (OSError, smtplib.SMTPException):
                    time.sleep(0.05)
            time.sleep(0.05)


def _quiet(service: ServiceUnderTest) -> bool:
    """Nothing left to do: every mail filed, no test open, no reply unsent."""
    db = sqlite3.connect(service.db)
    try:
        open_tests = db.execute("SELECT count(*) FROM test_requests WHERE done_at IS NULL").fetchone()[0]
        unsent = db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
        unfiled = db.execute("SELECT count(*) FROM mails WHERE status = 'new'").fetchone()[0]
        unread = db.execute("SELECT count(*) FROM command_mails WHERE outcome IS NULL").fetchone()[0]
    finally:
        db.close()
    return open_tests == unsent == unfiled == unread == 0


def interrupted_test_runs(log: str) -> int:
    """Tests a SIGKILL interrupted: started ("testing") in a process that never finished them."""
    cut = 0
    for life in log.split("serve: started as ")[1:-1]:  # every process but the last was killed
        started = set(re.findall(r"series (\d+ v\d+): testing \(", life))
        finished = set(re.findall(r"series (\d+ v\d+): (?:pass|fail|timeout|infra-error|not-applied|skipped);", life))
        cut += len(started - finished)
    return cut


@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory):
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "aurweb")


def test_killed_and_restarted_during_a_burst_every_version_is_answered_once(sample_repo, tmp_path, capsys):
    seed = int(os.environ.get("PATCHBOT_CRASH_SEED", random.randrange(1 << 30)))
    schedule = random.Random(seed)
    mails, versions = burst(Contributors(sample_repo, tmp_path / "contributor"))
    commands = sum(b"patchbot: " in mail for mail in mails)
    handler = CapturingHandler()
    with smtp_server(handler) as port:
        service = ServiceUnderTest(tmp_path / "bot", sample_repo, port, extra_config="lease = 30")
        service.start()
        mta = Mta(service, mails)
        mta.start()
        kills = 0
        while kills < KILLS:
            time.sleep(schedule.uniform(0.2, 2.5))
            service.kill()
            kills += 1
            service.start()
        mta.join(120)
        deadline = time.monotonic() + 240
        while not _quiet(service) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert service.stop() == 0
    messages = parsed(handler)
    stored = sqlite3.connect(service.db)
    stored_ids = {row[0] for row in stored.execute("SELECT message_id FROM mails")}
    series_versions = stored.execute("SELECT count(*) FROM series").fetchone()[0]
    retests = stored.execute("SELECT count(*) FROM test_requests WHERE number > 1").fetchone()[0]
    by_id = Counter(str(message["Message-ID"]) for message in messages)
    duplicates = sum(count - 1 for count in by_id.values())
    acknowledgements = [message for message in messages if str(message["In-Reply-To"]).startswith("<command.")]
    reports = Counter(str(message["X-Patchbot-Series"]) for message in messages if message not in acknowledgements)
    lost_mails = [mail for mail in mails if _message_id(mail) not in stored_ids]
    with capsys.disabled():
        print(f"\ncrash test (seed {seed}): {len(mails)} mails in ({mta.attempts} delivery attempts), {kills} SIGKILLs;"
              f" {len(messages)} mails out: {sum(reports.values())} reports for {series_versions} series versions"
              f" (+{retests} retests asked), {len(acknowledgements)} acknowledgements for {commands} commands;"
              f" duplicates {duplicates}, lost mails {len(lost_mails)},"
              f" versions without a report {series_versions - len(reports)};"
              f" tests cut short by a kill and run again {interrupted_test_runs(service.log_text())}")
    assert series_versions == versions
    assert duplicates == 0, by_id.most_common(3)
    assert lost_mails == []
    assert len(reports) == versions, sorted(reports)
    assert len(acknowledgements) == commands, [str(m["Subject"]) for m in acknowledgements]
    # Each version once, each retest once more.
    assert sum(reports.values()) == versions + retests, reports
    assert "Traceback" not in service.log_text()
