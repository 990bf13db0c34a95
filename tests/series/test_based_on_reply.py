"""A `Based-on:` in a reply changes what `patchbot test` applies the series on, when the series'
author wrote it; a stranger's does not (issue 14: it was parsed and then ignored)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from patchbot.sample import build_sample_repo, write_sample_config
from patchbot.sandbox import sandbox_available

GIT = ["git", "-c", "user.name=Jane Doe", "-c", "user.email=jane@example.org"]


def patchbot(config: Path, *args: str, stdin: bytes | None = None) -> dict | None:
    result = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args], input=stdin,
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout) if "--json" in args else None


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
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    upstream = build_sample_repo(tmp_path / "aurweb")
    config = write_sample_config(tmp_path / "patchbot.toml", upstream, tmp_path / "work", tmp_path / "patchbot.db")
    clone = tmp_path / "contributor"
    subprocess.run(["git", "clone", "-q", str(upstream), str(clone)], check=True)
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
