"""An archive written with `From A` separators, replayed through `patchbot ingest` and `series
list/show --json`: three versions of a series stay three series (issue 14: such an mbox was read
as one mail, and three versions became one series listing each file three times)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from gitmail import START


def patchbot(db: Path, *args: str):
    result = subprocess.run([sys.executable, "-m", "patchbot", "--db", str(db), *args], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout) if "--json" in args else result.stdout.decode()


def test_three_versions_in_a_from_a_archive_are_three_series(repo, tmp_path):
    versions = [repo.series(["Add a", "Add b"], cover="Two things", version=version,
                            sender_date=START + timedelta(days=version)) for version in (1, 2, 3)]
    reply = (b"From: Lukas <lukas@example.org>\nSubject: Re: [PATCH v3 0/2] Two things\n"
             b"Message-Id: <review@example.org>\nIn-Reply-To: " + versions[2][0].message_id.encode() +
             b"\nDate: Fri, 05 Mar 2021 12:00:00 +0000\n\nFrom a first look: fine.\n")
    mails = [mail.as_bytes() for version in versions for mail in version] + [reply]
    archive = tmp_path / "archive.mbox"
    archive.write_bytes(b"".join(b"From A\n" + mail.replace(b"\nFrom ", b"\n>From ") + b"\n" for mail in mails))

    patchbot(tmp_path / "patchbot.db", "ingest", str(archive))
    listed = patchbot(tmp_path / "patchbot.db", "series", "list", "--json")
    assert [(series["version"], series["complete"], series["obsolete"]) for series in listed] == [
        (1, True, True), (2, True, True), (3, True, False)]
    shown = patchbot(tmp_path / "patchbot.db", "series", "show", str(listed[2]["id"]), "--json")
    assert [patch["number"] for patch in shown["patches"]] == [1, 2] and shown["supersedes"] == listed[1]["id"]
    review = patchbot(tmp_path / "patchbot.db", "message", "show", "<review@example.org>", "--json")
    assert review["kind"] == "reply" and review["series"] == listed[2]["id"]
    assert [len(patchbot(tmp_path / "patchbot.db", "message", "show", patch["message_id"], "--json")["files"])
            for patch in shown["patches"]] == [1, 1]
