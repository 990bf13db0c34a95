"""`[PATCH 3/2]` after a 0/2 cover letter, end to end: ingested from git format-patch's mbox,
applied with the series by `patchbot test`, and the reply says the series has more patches than
announced."""

from __future__ import annotations

import re
import subprocess

from sample_clone import GIT, patchbot, sample_with_clone

from patchbot.config.load import load_config
from patchbot.reply.report import result_body
from patchbot.store.database import Store


def test_an_extra_patch_is_applied_with_its_series_and_the_reply_says_so(tmp_path):
    config, clone = sample_with_clone(tmp_path)
    for number in (1, 2, 3):
        (clone / f"NOTES{number}.md").write_text(f"note {number}\n")
        subprocess.run([*GIT, "add", "."], cwd=clone, check=True)
        subprocess.run([*GIT, "commit", "-q", "-m", f"Add note {number}"], cwd=clone, check=True)
    mbox = subprocess.run([*GIT, "format-patch", "--stdout", "--thread", "--cover-letter", "-3"], cwd=clone,
                          check=True, capture_output=True).stdout
    # Announced as two, then a third sent in the same thread: [PATCH 3/2].
    (tmp_path / "series.mbox").write_bytes(re.sub(rb"(?m)^Subject: \[PATCH (\d)/3\]", rb"Subject: [PATCH \1/2]", mbox))

    patchbot(config, "ingest", str(tmp_path / "series.mbox"))
    [series] = patchbot(config, "series", "list", "--json")
    assert series["total"] == 2 and series["received"] == [1, 2, 3] and series["extra_patches"] == [3]
    assert series["complete"]
    result = patchbot(config, "test", str(series["id"]), "--json")
    assert result["applied"], result
    store = Store(tmp_path / "patchbot.db")
    try:
        record = store.series(series["id"])
        body = result_body(load_config(config), record, store.latest_test_run(record.id))
    finally:
        store.close()
    assert "The series has more patches than announced: 2, and 1 more; all\nwere applied in order." in body
