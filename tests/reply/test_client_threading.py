"""Every reply patchbot sends sits under the mail it answers, in real mail clients' threading.

Issue 13: Python's email policy RFC 2047-encoded In-Reply-To and References holding the 81-82
character ids `git format-patch --thread` makes for @archlinux.org senders, and in mutt with
strict threading (as Thunderbird, HyperKitty and public-inbox thread) every such reply was an
orphan. Here the sample aur-dev month (git format-patch ids of 84-88 characters), with the PHP
fix's id made over 200 characters long, goes through the whole pipeline (suites run for real in
the sandbox); the replies a real SMTP server on 127.0.0.1 received are put next to the list's
mails and threaded by Debian's own clients:

- mutt, with `strict_threads` (References and In-Reply-To only, no subject guessing), asked in
  batch mode whether each reply's parent in its thread tree is the mail it answers: the pattern
  `~<(~i PARENT)` ("messages whose immediate parent matches");
- notmuch, whose `notmuch show --format=json` prints each thread as a tree, and whose
  `notmuch search --output=threads` names the thread of a message.

mutt reads the raw `<id>` tokens as the header holds them; notmuch (GMime) decodes RFC 2047
words first, so it threads even the old encoder's replies: mutt is the check that failed.
"""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import pty
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from outbox_support import aurweb_repo  # noqa: F401 - a module-scoped fixture: the sample repository
from outbox_support import Bot, Handler, message_id_of, sample_mails, smtp_server, write_config
from patchbot.mail.headers import message_ids_in
from patchbot.sources import RawMail

PHP_FIX = "<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>"
# No client makes one this long; a header folder must still not break or encode it.
OVER_200 = ("<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris."
            + "and-a-much-longer-local-part-" * 4 + "of-the-address@archlinux.org>")
SENTINEL = "<sentinel.mutt-batch@patchbot.test>"  # always tagged: mutt pipes the current mail when none is
CLIENT_TIMEOUT_S = 60
# notmuch keeps an id longer than this as `notmuch-sha1-...` and nests no reply under it.
NOTMUCH_ID_MAX = 190


@dataclass(frozen=True)
class Thread:
    """The sample's list mails and the replies patchbot sent to them, as bytes."""

    list_mails: tuple[bytes, ...]
    replies: tuple[bytes, ...]

    def parent_of(self, reply: bytes) -> str:
        """The mail a reply answers: its In-Reply-To, decoded as the email package reads it (so
        that a reply whose header a client cannot read still names the mail it was meant for)."""
        (parent,) = message_ids_in(str(email.message_from_bytes(reply, policy=email.policy.default)["In-Reply-To"]))
        return parent


@pytest.fixture(scope="module")
def thread(aurweb_repo, tmp_path_factory) -> Thread:
    mails = [RawMail(raw.data.replace(PHP_FIX.encode(), OVER_200.encode()), raw.origin)
             for raw in sample_mails(commands=True)]
    handler = Handler()
    with smtp_server(handler) as port:
        bot = Bot(write_config(tmp_path_factory.mktemp("threading"), aurweb_repo, port))
        try:
            bot.feed(mails)
        finally:
            bot.close()
    # As a client stores them: LF line ends (SMTP delivers CR LF).
    return Thread(tuple(raw.data.replace(b"\r\n", b"\n") for raw in mails),
                  tuple(data.replace(b"\r\n", b"\n") for _, _, data in handler.messages))


def test_the_replies_answer_long_real_ids(thread):
    """What the clients are given: replies to ids past the policy's 78 characters, one past 200."""
    parents = [thread.parent_of(reply) for reply in thread.replies]
    listed = {message_id_of(data) for data in thread.list_mails}
    assert len(thread.replies) >= 6 and set(parents) <= listed, parents
    assert OVER_200 in parents and len(OVER_200) > 200
    assert sum(81 <= len(parent) <= 100 for parent in parents) >= 3, [len(parent) for parent in parents]


# -- mutt ---------------------------------------------------------------------------------------


# mutt's pattern prompt takes some 250 characters: each id is matched by its start.
MUTT_ID_PREFIX = 48


def _mutt_regex(message_id: str) -> str:
    """A mutt (POSIX extended) regex matching the id's first characters: punctuation in
    brackets. No `^`, `<` or `>`: in a `push` string `^x` is a control key and `<...>` a function."""
    bare = message_id.strip("<>")[:MUTT_ID_PREFIX]
    assert all(character.isalnum() or character in ".@-_+=" for character in bare), bare
    return "".join(character if character.isalnum() else f"[{character}]" for character in bare)


def _run_mutt(mbox: Path, home: Path, push: str) -> None:
    """mutt in batch mode: it wants a terminal, so it gets a pseudo-terminal; `push` types its keys."""
    # Without ~/Mail mutt first asks whether to create it, and the pushed keys answer that.
    (home / "Mail").mkdir(exist_ok=True)
    command = ["mutt", "-n", "-F", "/dev/null", "-R", "-f", str(mbox),
               "-e", "set sort=threads strict_threads=yes pipe_split=yes wait_key=no charset=utf-8",
               "-e", f"push '{push}'"]
    master, slave = pty.openpty()
    env = {"TERM": "vt100", "HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: mutt has quit
                    break
                if not chunk:
                    break
                screen += chunk
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"mutt did not finish in {CLIENT_TIMEOUT_S} s; its screen ends with {screen[-800:]!r}")
    finally:
        os.close(master)
    assert process.returncode == 0, screen[-800:]


def _children_in_mutt(mbox: Path, home: Path, parent: str, reply: str) -> set[str]:
    """The ids mutt tags with `~<(~i PARENT)` among the sentinel and this reply."""
    found = home / "tagged"
    found.write_text("")
    keep = home / "keep"
    keep.write_text(f"#!/bin/sh\nsed -n 's/^[Mm][Ee][Ss][Ss][Aa][Gg][Ee]-[Ii][Dd]: *//p' | head -n 1 >> '{found}'\n")
    keep.chmod(0o755)
    pattern = f"~i {_mutt_regex(SENTINEL)} | (~i {_mutt_regex(reply)} ~<(~i {_mutt_regex(parent)}))"
    _run_mutt(mbox, home, f"<tag-pattern>{pattern}<enter><tag-prefix><pipe-entry>{keep}<enter><exit>")
    return set(found.read_text().split())


@pytest.mark.skipif(shutil.which("mutt") is None, reason="no mutt here (.ci/setup installs Debian's)")
def test_mutt_with_strict_threads_puts_every_reply_under_the_mail_it_answers(thread, tmp_path):
    mbox_path = tmp_path / "aur-dev.mbox"
    box = mailbox.mbox(mbox_path)
    sentinel = f"From: nobody@patchbot.test\nSubject: sentinel\nMessage-ID: {SENTINEL}\n\n-\n".encode()
    for data in (*thread.list_mails, *thread.replies, sentinel):
        box.add(data)
    box.close()
    ids = [message_id_of(data) for data in (*thread.list_mails, *thread.replies)]
    # mutt's ~i matches inside an id, here the id's start: no other id may hold it.
    assert not [(one, other) for one in ids for other in ids
                if one != other and one.strip("<>")[:MUTT_ID_PREFIX] in other]
    orphans = []
    for reply in thread.replies:
        reply_id, parent = message_id_of(reply), thread.parent_of(reply)
        tagged = _children_in_mutt(mbox_path, tmp_path, parent, reply_id)
        assert SENTINEL in tagged, f"mutt's batch run did not tag: {tagged}"
        if reply_id not in tagged:
            orphans.append((reply_id, parent))
    assert not orphans, f"replies mutt does not put under the mail they answer: {orphans}"


# -- notmuch ------------------------------------------------------------------------------------


def _notmuch(config: Path, *args: str) -> str:
    result = subprocess.run(["notmuch", *args], env={**os.environ, "NOTMUCH_CONFIG": str(config)},
                            capture_output=True, timeout=CLIENT_TIMEOUT_S)
    assert result.returncode == 0, (args, result.stderr.decode())
    return result.stdout.decode()


def _parents_in(tree: list, parent: str | None, found: dict[str, str | None]) -> None:
    """notmuch's JSON thread: a list of [message, [replies...]] pairs, nested."""
    for message, replies in tree:
        found[f"<{message['id']}>"] = parent
        _parents_in(replies, f"<{message['id']}>", found)


@pytest.mark.skipif(shutil.which("notmuch") is None, reason="no notmuch here (.ci/setup installs Debian's)")
def test_notmuch_puts_every_reply_under_the_mail_it_answers(thread, tmp_path):
    maildir = tmp_path / "mail"
    for folder in ("cur", "new", "tmp"):
        (maildir / folder).mkdir(parents=True)
    for number, data in enumerate((*thread.list_mails, *thread.replies)):
        (maildir / "cur" / f"{number:03d}.patchbot-test:2,S").write_bytes(data)
    config = tmp_path / "notmuch-config"
    config.write_text(f"[database]\npath={maildir}\n[new]\ntags=list\n[maildir]\nsynchronize_flags=false\n")
    _notmuch(config, "new", "--quiet")
    parents: dict[str, str | None] = {}
    for message_thread in json.loads(_notmuch(config, "show", "--format=json", "--body=false", "--entire-thread=true", "*")):
        _parents_in(message_thread, None, parents)
    files = {message_id_of(data): str(maildir / "cur" / f"{number:03d}.patchbot-test:2,S")
             for number, data in enumerate((*thread.list_mails, *thread.replies))}
    for reply in thread.replies:
        reply_id, parent = message_id_of(reply), thread.parent_of(reply)
        (thread_id,) = _notmuch(config, "search", "--output=threads", f"id:{reply_id.strip('<>')}").split()
        assert files[parent] in _notmuch(config, "search", "--output=files", thread_id).splitlines(), (reply_id, parent)
        if len(parent) <= NOTMUCH_ID_MAX:
            assert parents.get(reply_id) == parent, (reply_id, parent, parents.get(reply_id))
        else:  # indexed as its hash: in the thread, but nothing nests under it (a person's reply neither)
            assert parent not in parents and reply_id in parents, (reply_id, parent)
