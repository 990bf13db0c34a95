"""The `patchbot` command as a user runs it: real processes, a real SQLite file."""

from __future__ import annotations

import json
import mailbox
import subprocess
import sys
from pathlib import Path

import pytest

SINGLE_PATCH = b"""From: Jane Doe <jane@example.org>
To: aur-dev@lists.archlinux.org
Subject: [PATCH] rpc: return an error for unknown types
Date: Mon, 01 Mar 2021 12:00:00 +0000
Message-Id: <single.1@example.org>

The RPC answered 200 with an empty result.

Signed-off-by: Jane Doe <jane@example.org>
---
 web/html/rpc.php | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/web/html/rpc.php b/web/html/rpc.php
index 1111111..2222222 100644
--- a/web/html/rpc.php
+++ b/web/html/rpc.php
@@ -1,3 +1,3 @@
 <?php
-$type = $_GET['type'];
+$type = $_GET['type'] ?? 'error';
 echo json_encode([]);
-- 
2.39.5
"""


def numbered(number: int, total: int, cover_id: str = "<cover.9@example.org>") -> bytes:
    return SINGLE_PATCH.replace(b"[PATCH]", f"[PATCH {number}/{total}]".encode()).replace(
        b"<single.1@example.org>", f"<part.{number}@example.org>\nIn-Reply-To: {cover_id}".encode()
    )


def patchbot(*args: str, db: Path, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "patchbot", "--db", str(db), *args],
        input=stdin, capture_output=True, timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr.decode()}")
    return result


def test_ingest_an_mbox_then_list_series_as_json(tmp_path):
    mbox_path = tmp_path / "list.mbox"
    box = mailbox.mbox(mbox_path)
    for number in (2, 1, 3):
        box.add(numbered(number, 3))
    box.add(SINGLE_PATCH)
    box.close()
    db = tmp_path / "p.db"
    result = patchbot("ingest", str(mbox_path), db=db)
    assert "Read 4 mails: 4 new, 0 already known." in result.stdout.decode()
    listed = json.loads(patchbot("series", "list", "--json", db=db).stdout)
    assert len(listed) == 2
    three = next(s for s in listed if s["total"] == 3)
    assert {key: three[key] for key in ("version", "received", "complete", "cover", "author", "obsolete", "supersedes")} == {
        "version": 1, "received": [1, 2, 3], "complete": True, "cover": None, "author": "jane@example.org",
        "obsolete": False, "supersedes": None,
    }
    assert [p["number"] for p in three["patches"]] == [1, 2, 3]
    assert [p["message_id"] for p in three["patches"]] == ["<part.1@example.org>", "<part.2@example.org>", "<part.3@example.org>"]
    assert three["patches"][0]["subject"] == "[PATCH 1/3] rpc: return an error for unknown types"
    assert isinstance(three["id"], int) and three["title"] == "rpc: return an error for unknown types"


def test_ingesting_twice_changes_nothing(tmp_path):
    mail = tmp_path / "one.eml"
    mail.write_bytes(SINGLE_PATCH)
    db = tmp_path / "p.db"
    patchbot("ingest", str(mail), db=db)
    before = patchbot("series", "list", "--json", db=db).stdout
    again = patchbot("ingest", str(mail), str(mail), db=db)
    assert "Read 2 mails: 0 new, 2 already known." in again.stdout.decode()
    assert patchbot("series", "list", "--json", db=db).stdout == before


def test_ingest_reads_stdin_a_maildir_and_a_raw_mail_without_from_line(tmp_path):
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(numbered(1, 2))
    raw = tmp_path / "raw.eml"
    raw.write_bytes(numbered(2, 2))
    db = tmp_path / "p.db"
    patchbot("ingest", str(tmp_path / "Maildir"), str(raw), db=db)
    patchbot("ingest", "-", db=db, stdin=SINGLE_PATCH)
    listed = json.loads(patchbot("series", "list", "--json", db=db).stdout)
    assert sorted(s["received"] for s in listed) == [[1], [1, 2]]


def test_message_show_reports_the_parse(tmp_path):
    db = tmp_path / "p.db"
    patchbot("ingest", "-", db=db, stdin=SINGLE_PATCH)
    shown = json.loads(patchbot("message", "show", "single.1@example.org", "--json", db=db).stdout)
    assert (shown["kind"], shown["version"], shown["counter"], shown["total"], shown["has_diff"], shown["pull_url"]) == (
        "patch", 1, 1, 1, True, None)
    assert shown["title"] == "rpc: return an error for unknown types"
    assert shown["files"] == [{
        "path": "web/html/rpc.php", "old_path": None, "added": False, "deleted": False, "renamed": False,
        "binary": False, "old_mode": "100644", "new_mode": "100644", "lines_added": 1, "lines_removed": 1,
        "malformed": False,
    }]
    assert shown["trailers"] == [{"name": "Signed-off-by", "value": "Jane Doe <jane@example.org>"}]
    text = patchbot("message", "show", "<single.1@example.org>", db=db).stdout.decode()
    assert "Kind:     patch" in text and "web/html/rpc.php  +1 -1" in text


def test_garbage_is_kept_and_rejected_with_a_reason(tmp_path):
    db = tmp_path / "p.db"
    result = patchbot("ingest", "-", db=db, stdin=b"\x00\xff random bytes, not a mail \x89PNG")
    out = result.stdout.decode()
    assert "rejected             1" in out
    assert "not a mail: no header lines" in out or "no usable sender address in From" in out


def test_an_unreadable_source_exits_3_and_the_others_are_still_ingested(tmp_path):
    good = tmp_path / "good.eml"
    good.write_bytes(SINGLE_PATCH)
    db = tmp_path / "p.db"
    result = patchbot("ingest", str(tmp_path / "missing.mbox"), str(good), db=db, check=False)
    assert result.returncode == 3
    assert "missing.mbox" in result.stderr.decode()
    assert len(json.loads(patchbot("series", "list", "--json", db=db).stdout)) == 1


def test_a_config_with_a_bad_key_exits_4_naming_the_key(tmp_path):
    config = tmp_path / "patchbot.toml"
    config.write_text('[store]\ndatabase = "x.db"\n')
    result = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), "series", "list"], capture_output=True)
    assert result.returncode == 4
    assert "store.database: unknown key" in result.stderr.decode()


def test_the_config_chooses_the_database_relative_to_itself(tmp_path):
    config = tmp_path / "conf" / "patchbot.toml"
    config.parent.mkdir()
    config.write_text('[store]\ndb = "state/bot.db"\n')
    subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), "ingest", "-"], input=SINGLE_PATCH, check=True, capture_output=True)
    assert (tmp_path / "conf" / "state" / "bot.db").is_file()


def test_unknown_series_and_message_exit_5(tmp_path):
    db = tmp_path / "p.db"
    assert patchbot("series", "show", "42", db=db, check=False).returncode == 5
    assert patchbot("message", "show", "<nope@x>", db=db, check=False).returncode == 5


@pytest.mark.parametrize("args", [["--help"], ["ingest", "--help"], ["series", "list", "--help"]])
def test_help_explains(tmp_path, args):
    result = patchbot(*args, db=tmp_path / "p.db")
    assert b"usage: patchbot" in result.stdout
    if args == ["--help"]:
        assert b"exit codes:" in result.stdout


def test_the_shared_options_may_also_come_after_the_command(tmp_path):
    """`patchbot serve -c FILE`, as a unit file says it, and `patchbot -c FILE serve` alike."""
    (tmp_path / "one.eml").write_bytes(SINGLE_PATCH)
    patchbot("ingest", str(tmp_path / "one.eml"), "--db", str(tmp_path / "after.db"), db=tmp_path / "before.db")
    assert (tmp_path / "after.db").exists() and not (tmp_path / "before.db").exists()
    config = tmp_path / "bad.toml"
    config.write_text("[store]\nnope = 1\n")
    result = patchbot("series", "list", "-c", str(config), db=tmp_path / "after.db", check=False)
    assert result.returncode == 4 and b"store.nope: unknown key" in result.stderr


def test_ingest_reads_a_gzipped_archive_export_and_names_a_truncated_one(tmp_path):
    """HyperKitty exports a list's archive as .mbox.gz: --backfill takes it as it is."""
    import gzip

    archive = tmp_path / "aur-dev.mbox.gz"
    mbox = b"From x Mon Mar  1 12:00:00 2021\n" + SINGLE_PATCH + b"\nFrom x Mon Mar  1 13:00:00 2021\n" + numbered(1, 1)
    archive.write_bytes(gzip.compress(mbox))
    result = patchbot("ingest", "--backfill", str(archive), db=tmp_path / "p.db")
    listed = json.loads(patchbot("series", "list", "--json", db=tmp_path / "p.db").stdout)
    assert len(listed) == 2, result.stderr
    archive.write_bytes(gzip.compress(mbox)[:-20])
    cut = patchbot("ingest", str(archive), db=tmp_path / "q.db", check=False)
    assert cut.returncode == 3 and b"aur-dev.mbox.gz" in cut.stderr
