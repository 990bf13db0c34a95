"""Patch mails made the way `git format-patch` and `git send-email` make them, from a real repository."""

from __future__ import annotations

import email.utils
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from patchbot.series.intake import take_in
from patchbot.sources import RawMail
from patchbot.store.database import Store

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Jane Doe", "GIT_AUTHOR_EMAIL": "jane@example.org",
    "GIT_COMMITTER_NAME": "Jane Doe", "GIT_COMMITTER_EMAIL": "jane@example.org",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
}
START = datetime(2021, 3, 1, 12, 0, tzinfo=timezone.utc)


@dataclass
class Mail:
    """One outgoing mail: headers we may still change, then the body as git wrote it."""

    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def set(self, name: str, value: str | None) -> "Mail":
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))
        return self

    @property
    def message_id(self) -> str:
        return self.header("Message-Id")

    def as_bytes(self) -> bytes:
        head = "".join(f"{key}: {value}\n" for key, value in self.headers)
        return (head + "\n" + self.body).encode("utf-8")


class PatchRepo:
    """A git repository with a few commits to format as patch mails."""

    def __init__(self, path: Path):
        self.path = path
        self._git("init", "-q", "-b", "master")
        self._commit("README", "base\n", "Initial commit", when=0)
        self.base = self._git("rev-parse", "HEAD").strip()
        self.serial = 0

    def commit_on_master(self, name: str, text: str, message: str) -> str:
        """Move master on (as upstream does while a series waits); returns the new commit."""
        self._git("checkout", "-q", "master")
        self.serial += 1
        self._commit(name, text, message, when=self.serial * 100)
        return self._git("rev-parse", "HEAD").strip()

    def _git(self, *args: str, env: dict | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, env={**GIT_ENV, **(env or {})},
            check=True, capture_output=True, text=True,
        ).stdout

    def _commit(self, name: str, text: str, message: str, when: int) -> None:
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        (self.path / name).write_text(text)
        self._git("add", name)
        stamp = f"@{1614600000 + when} +0000"
        self._git("commit", "-q", "-m", message, env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})

    def series(
        self, titles: list[str], *, cover: str | None = None, version: int = 1, thread: str | None = "shallow",
        in_reply_to: str | None = None, sender_date: datetime = START, extra_cover_lines: str = "",
        files: list[tuple[str, str]] | None = None, on_top_of: str | None = None,
    ) -> list[Mail]:
        """Commit one change per title on a fresh branch and format them as git send-email would send them.

        Each commit adds a new PHP file, or writes `files[i]` (path, content) when given. The
        branch starts at the first commit, or at `on_top_of` (the branch of an earlier series).
        """
        self.serial += 1
        branch = f"topic{self.serial}"
        start = on_top_of or self.base
        self._git("checkout", "-q", "-b", branch, start)
        for index, title in enumerate(titles):
            name, text = files[index] if files else (f"web/file{self.serial}_{index}.php", f"<?php // {title} v{version}\n")
            self._commit(name, text, f"{title}\n\nSigned-off-by: Jane Doe <jane@example.org>", when=self.serial * 100 + index)
        args = ["format-patch", "--stdout", f"{start}..{branch}"]
        if version > 1:
            args.append(f"--reroll-count={version}")
        if len(titles) > 1 or cover:
            args.append("--numbered")
        args.append(f"--thread={thread}" if thread else "--no-thread")
        if cover:
            args.append("--cover-letter")
        if in_reply_to:
            args.append(f"--in-reply-to={in_reply_to}")
        mails = _split_format_patch(self._git(*args))
        self._git("checkout", "-q", "master")
        self.last_branch = branch
        return send_email_like(mails, sender_date, cover, extra_cover_lines, tag=f"s{self.serial}v{version}")


def _split_format_patch(output: str) -> list[Mail]:
    chunks = re.split(r"^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001\n", output, flags=re.MULTILINE)
    mails = []
    for chunk in chunks:
        if not chunk.strip():
            continue
        head, _, body = chunk.partition("\n\n")
        headers: list[tuple[str, str]] = []
        for line in head.split("\n"):
            if line[:1] in (" ", "\t") and headers:
                headers[-1] = (headers[-1][0], headers[-1][1] + "\n" + line)
            else:
                key, _, value = line.partition(": ")
                headers.append((key, value))
        mails.append(Mail(headers, body))
    return mails


def send_email_like(mails: list[Mail], start: datetime, cover: str | None, extra_cover_lines: str, tag: str) -> list[Mail]:
    """What git send-email adds: a Date a second apart, a Message-Id where missing, the cover text."""
    for mail in mails:
        # format-patch names a cover letter by the current second: make it unique per series.
        mail.headers = [(key, re.sub(r"<cover\.\d+\.git\.", f"<cover.{tag}.git.", value)) for key, value in mail.headers]
    for index, mail in enumerate(mails):
        mail.set("Date", email.utils.format_datetime(start + timedelta(seconds=index)))
        if mail.message_id is None:
            mail.set("Message-Id", f"<{tag}.{index}.git-send-email.jane@example.org>")
        if cover and "*** SUBJECT HERE ***" in (mail.header("Subject") or ""):
            mail.set("Subject", mail.header("Subject").replace("*** SUBJECT HERE ***", cover))
            mail.body = mail.body.replace("*** BLURB HERE ***", f"This series does {cover}.\n{extra_cover_lines}")
        mail.set("To", "aur-dev@lists.archlinux.org")
    return mails


def deliver(store: Store, mails: list[Mail]) -> list:
    """Take the mails in, in the order given, as the list would deliver them."""
    return [take_in(store, RawMail(mail.as_bytes(), "test")) for mail in mails]
