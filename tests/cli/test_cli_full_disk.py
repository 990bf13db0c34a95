"""A command that cannot write the database for the machine's reasons exits 75 (EX_TEMPFAIL)
with one sentence, no traceback: cron and systemd read it as "try again later"."""

from __future__ import annotations

from store.small_disk import small_disk
from test_ingest_command import SINGLE_PATCH, patchbot

from patchbot.store.database import Store


def test_ingest_on_a_full_disk_exits_75_and_the_mail_goes_in_once_there_is_room(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        db = disk.path / "p.db"
        held = Store(db)  # the service's connection: the log files stay, the open works
        disk.empty_the_wal(db)
        (tmp_path / "patch.eml").write_bytes(SINGLE_PATCH)
        disk.fill()
        full = patchbot("ingest", str(tmp_path / "patch.eml"), db=db, check=False)
        assert full.returncode == 75, full.stderr
        assert b"cannot be written now" in full.stderr and b"Traceback" not in full.stderr
        disk.free()
        patchbot("ingest", str(tmp_path / "patch.eml"), db=db)
        assert held.mail("<single.1@example.org>").status == "filed"
        held.close()
