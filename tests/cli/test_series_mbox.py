"""`patchbot series mbox ID`: the series as an mbox that `git am` applies, with the review
trailers of its thread (issue 13 item 4). Real processes: the sample's mails ingested by
`patchbot ingest`, the mbox written by `patchbot series mbox`, applied by `git am` into a fresh
repository made by the sample project's make-repo."""

from __future__ import annotations

import quopri
import re
import subprocess
import sys
from pathlib import Path

import pytest

from patchbot.demo.sample import SAMPLE_MAILS, build_sample_repo, write_sample_config

GIT_ENV = {"GIT_AUTHOR_NAME": "Jane Doe", "GIT_AUTHOR_EMAIL": "jane@example.org", "GIT_COMMITTER_NAME": "Am",
           "GIT_COMMITTER_EMAIL": "am@example.org", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
           "PATH": "/usr/bin:/bin"}
REVIEW = "Reviewed-by: Lukas Fleischer <lukas@example.org>"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def patchbot(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path]:
    """The sample's aur-dev month ingested (filed, not tested): the config and the repository."""
    folder = tmp_path_factory.mktemp("series-mbox")
    repo = build_sample_repo(folder / "aurweb")
    config = write_sample_config(folder / "patchbot.toml", repo, folder / "work", folder / "patchbot.db")
    assert patchbot(config, "ingest", str(SAMPLE_MAILS)).returncode == 0
    return config, repo


def applied(repo: Path, mbox: Path, folder: Path) -> Path:
    """A fresh clone of the sample repository at its master, with `mbox` applied by git am."""
    clone = folder / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=folder)
    git("am", "--patch-format=mboxrd", str(mbox), cwd=clone)
    return clone


def test_a_reviewed_patch_is_applied_with_the_review_trailer_of_its_thread(sample, tmp_path):
    config, repo = sample
    mbox = tmp_path / "php-fix.mbox"
    result = patchbot(config, "series", "mbox", "1", "-o", str(mbox))
    assert result.returncode == 0, result.stderr.decode()
    assert "1 review trailer from the thread" in result.stderr.decode()
    assert f"git am --patch-format=mboxrd {mbox}" in result.stderr.decode()
    clone = applied(repo, mbox, tmp_path)
    assert git("log", "-1", "--format=%an <%ae>%n%B", cwd=clone) == (
        "Kevin Morris <kevin@example.org>\n"
        "rpc: name the limit of suggestions\n\n"
        "The limit of 20 suggestions was a bare number in the query; give it\n"
        "a name, as the Python port will need it too.\n\n"
        f"Signed-off-by: Kevin Morris <kevin@example.org>\n{REVIEW}\n\n")
    assert "RPC_SUGGEST_LIMIT" in (clone / "web/lib/rpc.php").read_text()


def test_a_series_on_stdout_is_its_patches_in_order_without_the_cover_letter(sample, tmp_path):
    config, repo = sample
    result = patchbot(config, "series", "mbox", "5")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.count(b"\nFrom mboxrd@z Thu Jan  1 00:00:00 1970\n") == 2
    assert b"[PATCH v2 0/3]" not in result.stdout
    mbox = tmp_path / "v2.mbox"
    mbox.write_bytes(result.stdout)
    clone = applied(repo, mbox, tmp_path)
    assert git("log", "--reverse", "--format=%s", "master@{u}..HEAD", cwd=clone).splitlines() == [
        "rpc: add suggest() to the Python port", "rpc: answer type=suggest from Python",
        "test: cover type=suggest in the Python tests"]


def test_version_picks_another_version_of_the_series_and_a_missing_one_is_not_found(sample):
    config, _ = sample
    first = patchbot(config, "series", "mbox", "5", "--version", "1")
    assert first.returncode == 0 and b"Subject: [PATCH 1/3]" in first.stdout and b"[PATCH v2" not in first.stdout
    assert patchbot(config, "series", "mbox", "3", "--version", "2").stdout.count(b"Subject: [PATCH v2 ") == 3
    missing = patchbot(config, "series", "mbox", "3", "--version", "7")
    assert (missing.returncode, missing.stdout) == (5, b"")
    assert "series 3 has no version 7" in missing.stderr.decode()
    assert patchbot(config, "series", "mbox", "99").returncode == 5


# A commit message with lines that an mbox reader takes for separators, or quotes.
TRICKY_MESSAGE = """rpc: keep the lines that look like mbox separators

From now on the suggestions are limited by name.
From 1234567890 Mon Sep 17 00:00:00 2001
>From a quoted line
>>From a twice quoted line
From: not a header either

Signed-off-by: Jane Doe <jane@example.org>
"""


def tricky_series(repo: Path, folder: Path) -> tuple[list[bytes], str]:
    """Two patches by Jane, format-patch'ed from a clone of the sample as git send-email sends
    them: the first with TRICKY_MESSAGE, the second re-encoded quoted-printable (as some
    clients do). Returns the mails and the README the two make."""
    work = folder / "author"
    git("clone", "-q", str(repo), str(work), cwd=folder)
    readme = work / "README.md"
    readme.write_text(readme.read_text() + "\nFrom here on, patches.\n")
    git("commit", "-q", "-a", "-m", TRICKY_MESSAGE, cwd=work)
    readme.write_text(readme.read_text() + "Caf\u00e9 = 1\n")
    git("commit", "-q", "-a", "-m", "doc: a second line\n\nSigned-off-by: Jane Doe <jane@example.org>", cwd=work)
    out = git("format-patch", "--stdout", "--numbered", "--thread=shallow", "origin/master..HEAD", cwd=work)
    mails = [chunk.encode() for chunk in re.split(r"^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001\n", out, flags=re.M)
             if chunk.strip()]
    assert len(mails) == 2 and b"Content-Transfer-Encoding" not in mails[1]  # an ASCII message: none declared
    head, _, body = mails[1].partition(b"\n\n")
    mails[1] = (head + b"\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8"
                b"\nContent-Transfer-Encoding: quoted-printable\n\n" + quopri.encodestring(body))
    assert b"Caf=C3=A9 =3D 1" in mails[1]
    return mails, readme.read_text()


def reply(sender: str, parent: bytes, text: str, number: int) -> bytes:
    parent_id = re.search(rb"^Message-I[dD]: (<[^>]+>)", parent, re.M).group(1).decode()
    return (f"From: {sender}\nTo: aur-dev@lists.archlinux.org\nSubject: Re: the patch\n"
            f"Date: Mon, 30 Nov 2026 12:0{number}:00 +0000\nMessage-Id: <review.tricky.{number}@example.org>\n"
            f"In-Reply-To: {parent_id}\nReferences: {parent_id}\n\n{text}").encode()


def test_from_lines_in_a_commit_message_and_an_encoded_patch_round_trip_through_git_am(sample, tmp_path):
    config, repo = sample
    mails, readme = tricky_series(repo, tmp_path)
    mails += [
        reply("Lukas Fleischer <lukas@example.org>", mails[1], f"Looks right.\n\n{REVIEW}\n", 1),
        # Eve may vouch for her own test, not write Lukas's review.
        reply("Eve Passerby <eve@example.net>", mails[0],
              "Works here.\n\nTested-by: Eve Passerby <eve@example.net>\n"
              "Reviewed-by: Lukas Fleischer <lukas@example.org>\n", 2),
    ]
    files = []
    for index, mail in enumerate(mails):
        files.append(tmp_path / f"{index}.eml")
        files[-1].write_bytes(mail)
    assert patchbot(config, "ingest", *map(str, files)).returncode == 0
    listed = patchbot(config, "series", "list").stdout.decode()
    series_id = next(line.split()[0] for line in listed.splitlines() if "keep the lines that look like" in line)
    mbox = tmp_path / "tricky.mbox"
    result = patchbot(config, "series", "mbox", series_id, "-o", str(mbox))
    assert result.returncode == 0, result.stderr.decode()
    data = mbox.read_bytes()
    for quoted in (b"\n>From 1234567890 Mon Sep 17 00:00:00 2001\n", b"\n>>From a quoted line\n",
                   b"\n>>>From a twice quoted line\n", b"\n>From now on the suggestions"):
        assert quoted in data, quoted
    clone = applied(repo, mbox, tmp_path)
    commits = git("rev-list", "--reverse", "origin/master..HEAD", cwd=clone).split()
    assert [git("log", "-1", "--format=%an%n%B", commit, cwd=clone) for commit in commits] == [
        "Jane Doe\n" + TRICKY_MESSAGE + "Tested-by: Eve Passerby <eve@example.net>\n\n",
        "Jane Doe\ndoc: a second line\n\nSigned-off-by: Jane Doe <jane@example.org>\n" + REVIEW + "\n\n",
    ]
    assert (clone / "README.md").read_text() == readme
