"""Pull request mails made the way maintainers make them: `git request-pull` run in a real
repository (its text sent as a mail, as `git request-pull ... | git send-email` or a mail client
does), and QEMU's `[PULL 0/N]`: `git format-patch --cover-letter` whose cover letter carries the
request-pull text, with the patches threaded under it."""

from __future__ import annotations

import email.utils
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from gitmail import START, Mail, _split_format_patch

PULL_GIT = ["git", "-c", "user.name=Alice Maintainer", "-c", "user.email=alice@example.org"]
SENDER = "Alice Maintainer <alice@example.org>"


def request_pull(source: Path, since: str, url: str, ref: str) -> str:
    """What `git request-pull SINCE URL REF` prints in `source` (REF must be at URL already)."""
    return subprocess.run([*PULL_GIT, "request-pull", since, url, ref], cwd=source, check=True,
                          capture_output=True, text=True).stdout


def pull_mail(body: str, subject: str, message_id: str, sender: str = SENDER,
              date: datetime = START, in_reply_to: str | None = None) -> bytes:
    """A mail whose body is a request-pull text (or anything a maintainer wrote above it)."""
    headers = [("From", sender), ("To", "aur-dev@lists.archlinux.org"), ("Subject", subject),
               ("Date", email.utils.format_datetime(date)), ("Message-Id", f"<{message_id}>")]
    if in_reply_to:
        headers += [("In-Reply-To", in_reply_to), ("References", in_reply_to)]
    return Mail(headers, body).as_bytes()


def qemu_pull(source: Path, since: str, url: str, ref: str, title: str, tag: str, version: int = 1,
              date: datetime = START) -> list[bytes]:
    """`[PULL 0/N] title` (`[PULL vV 0/N]`) with the request-pull text as its cover letter, and the
    N patches since..ref threaded under it, as QEMU's maintainers send a pull request."""
    args = ["format-patch", "--stdout", "--cover-letter", "--numbered", "--thread=shallow", "--subject-prefix=PULL",
            f"{since}..{ref}"]
    if version > 1:
        args.insert(1, f"--reroll-count={version}")
    mails = _split_format_patch(subprocess.run([*PULL_GIT, *args], cwd=source, check=True, capture_output=True,
                                               text=True).stdout)
    text = request_pull(source, since, url, ref)
    for index, mail in enumerate(mails):
        if mail.header("From") != SENDER:  # git send-email: the sender in From, the author in the body
            mail.body = f"From: {mail.header('From')}\n\n{mail.body}"
            mail.set("From", SENDER)
        # format-patch makes ids from the current second: made unique per pull with `tag`.
        mail.headers = [(key, re.sub(r"\.\d+\.git\.", f".{tag}.git.", value)) for key, value in mail.headers]
        mail.set("Date", email.utils.format_datetime(date + timedelta(seconds=index)))
        mail.set("To", "aur-dev@lists.archlinux.org")
    cover = mails[0]
    cover.set("Subject", cover.header("Subject").replace("*** SUBJECT HERE ***", title))
    cover.body = cover.body.replace("*** BLURB HERE ***", text)  # what QEMU's maintainers write there
    return [mail.as_bytes() for mail in mails]
