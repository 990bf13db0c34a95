"""A `Based-on:` in a reply changes what `patchbot test` applies the series on, when the series'
author wrote it; a stranger's does not (issue 14: it was parsed and then ignored)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sample_clone import GIT, patchbot, sample_with_clone


def one_patch(clone: Path, name: str, text: str, message: str) -> bytes:
    (clone / name).write_text(text)
    subprocess.run([*GIT, "add", name], cwd=clone, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", message], cwd=clone, check=True)
    return subprocess.run([*GIT, "format-patch", "--stdout", "--thread", "-1"], cwd=clone, check=True, capture_output=True).stdout


def message_id(mail: bytes) -> str:
    return next(line.split(b":", 1)[1].strip().decode() for line in mail.split(b"\n") if line.lower().startswith(b"message-id:"))


def reply(sender: str, parent: bytes, body: str, number: int) -> bytes:
    parent_id = message_id(parent)
    return (f"From {sender} Mon Sep 17 00:00:00 2001\nFrom: {sender}\nSubject: Re: the helper's user\n"
            f"Message-Id: <reply{number}@example.org>\nIn-Reply-To: {parent_id}\nReferences: {parent_id}\n"
            f"Date: Tue, 02 Mar 2021 12:00:00 +0000\n\n{body}\n").encode()


def test_the_authors_based_on_in_a_reply_is_the_base_and_a_strangers_is_not(tmp_path):
    config, clone = sample_with_clone(tmp_path)
    helper = one_patch(clone, "HELPER.md", "helper\n", "Add a helper note")
    user = one_patch(clone, "HELPER.md", "helper, used\n", "Use the helper note")
    # Both patches were sent, each alone; the second needs the first.
    patchbot(config, "ingest", "-", stdin=helper + b"\n" + user)
    user_series = next(s for s in patchbot(config, "series", "list", "--json") if s["title"] == "Use the helper note")

    stranger = reply("Mallory <mallory@evil.example>", user, f"Based-on: {message_id(helper)}", 1)
    patchbot(config, "ingest", "-", stdin=stranger)
    result = patchbot(config, "test", str(user_series["id"]), "--json")
    assert not result["applied"]

    author = reply("Jane Doe <jane@example.org>", user, f"This needs my helper patch.\n\nBased-on: {message_id(helper)}", 2)
    patchbot(config, "ingest", "-", stdin=author)
    [shown] = [s for s in patchbot(config, "series", "list", "--json") if s["id"] == user_series["id"]]
    assert shown["based_on"] == [message_id(helper)]
    result = patchbot(config, "test", str(user_series["id"]), "--json")
    assert result["applied"], result
    assert "as Based-on: says" in result["base_reason"]
