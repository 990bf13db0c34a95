"""Patchwork's real-world mail corpus, ingested into a real store, against Patchwork's results.

Each entry of the corpus' expectations.json is one test, named by its file. The mail goes
through take_in (mail/ files read the way the CLI reads a path, fuzz/ files whole as the one
message each is) into a SQLite store, and what the store reports (show.mail_object, the
object `patchbot message show --json` prints) is compared with the entry. The bare diffs of
patches/ are not mails: they go straight through split_text and files_touched.

Patchwork's word for a reply is "comment"; its "none" (no object created) is our `other` or a
mail rejected with a reason. Where patchbot deliberately decides otherwise, DEVIATIONS says why
and DEVIATING_FIELDS says where; the test fails if such a deviation disappears, too.
"""

from __future__ import annotations

import json
import re

import pytest

from patchwork_corpus import AVAILABLE, MISSING_REASON, PATCHWORK, entries, mails_of

if not AVAILABLE:
    pytest.skip(MISSING_REASON, allow_module_level=True)

from patchbot.cli.entry import main as patchbot_main  # noqa: E402
from patchbot.series.intake import Status, take_in  # noqa: E402
from patchbot.mail.diff import FileChange, files_touched, split_text  # noqa: E402
from patchbot.cli.show import mail_object  # noqa: E402
from patchbot.store.database import Store  # noqa: E402

DEVIATIONS = {
    "mail/0007-cvs-format-diff.mbox": (
        "Patchwork names this patch \": Fix ld pr11138 FAILures on mips*.\" because it keeps the "
        "colon that followed the [Patch] prefix, while patchbot strips that colon so that the "
        "title reads as a title and compares equal across versions."
    ),
    "mail/0014-with-unencoded-utf8-headers.mbox": (
        "The subject carries raw, unencoded UTF-8 bytes, which Patchwork turned into U+FFFD "
        "replacement characters, while patchbot decodes them as UTF-8 and keeps the author's "
        "name \"Rafał Miłecki\" intact."
    ),
    "mail/0019-multipart-patch.mbox": (
        "unidiff 1.0.1 raised on the corpus' copy of this diff, but patchbot ends the diff where "
        "the hunk's line counts end and unidiff accepts the blank context lines that lost their "
        "leading space, so patchbot reports patchwork/parser.py (+3 -1) as a well-formed file."
    ),
}
# Which compared fields each deviation concerns: exactly these differ, no more, no fewer.
DEVIATING_FIELDS = {
    "mail/0007-cvs-format-diff.mbox": {"title"},
    "mail/0014-with-unencoded-utf8-headers.mbox": {"title"},
    "mail/0019-multipart-patch.mbox": {"files"},
}

# Patchwork's kind -> the (status, kind) pairs of ours that mean the same.
KIND_MAP = {
    "patch": {("filed", "patch")},
    "pull": {("filed", "pull")},
    "comment": {("filed", "reply")},
    "none": {("filed", "other"), ("rejected", None)},
}

MAIL_ENTRIES = [entry for entry in entries() if entry["container"] in ("mbox", "rfc822", "whole-file")]
DIFF_ENTRIES = [entry for entry in entries() if entry["container"] == "bare-diff"]


def by_file(entry: dict) -> str:
    return entry["file"]


def expected_title(entry: dict) -> str | None:
    """Patchwork's name keeps the prefixes other than PATCH in one leading group: drop it."""
    name = entry["expected_name"]
    if name is None:
        return None
    return re.sub(r"^\[[^\]]*\]\s*", "", name)


def unidiff_summary(changes) -> str:
    """Files in the corpus' `unidiff_1_0_1` notation: `path[flags] +added-removed; ...`."""
    if not changes:
        return "no diff found"
    parts = []
    for change in changes:
        flags = []
        if change.binary:
            flags.append("binary")
        if change.added:
            flags.append("added")
        if change.deleted:
            flags.append("removed")
        if change.renamed:
            flags.append("rename")
        if change.mode_changed:
            flags.append(f"mode {change.old_mode}->{change.new_mode}")
        flag_text = f"[{','.join(flags)}]" if flags else ""
        parts.append(f"{change.path}{flag_text} +{change.lines_added}-{change.lines_removed}")
    return "ok: " + "; ".join(parts)


def files_as_expected(entry: dict, files: list[dict]) -> bool:
    """Does the stored file list agree with what unidiff 1.0.1 made of the corpus' diff?

    Where unidiff raised, patchbot must still report the files, with at least one marked
    malformed (a file unidiff rejects is kept, not dropped and not passed off as sound).
    """
    changes = [FileChange(**change) for change in files]
    expected = entry["unidiff_1_0_1"]
    if expected.startswith("UnidiffParseError"):
        return bool(changes) and any(change.malformed for change in changes)
    return unidiff_summary(changes) == expected


def differences(entry: dict, stored: dict) -> dict[str, tuple]:
    """The compared fields where the stored mail and the entry disagree: name -> (ours, theirs)."""
    found = {}
    if (stored["status"], stored["kind"]) not in KIND_MAP[entry["kind"]]:
        found["kind"] = ((stored["status"], stored["kind"]), entry["kind"])
    for ours, theirs in (("version", "version"), ("counter", "series_number"), ("total", "series_total"), ("pull_url", "pull_url")):
        if stored[ours] != entry[theirs]:
            found[ours] = (stored[ours], entry[theirs])
    if entry["has_diff"] is not None and stored["has_diff"] != entry["has_diff"]:
        found["has_diff"] = (stored["has_diff"], entry["has_diff"])
    if entry["file"].startswith("mail/"):
        # Fuzzed ids are mangled on purpose; the real mails' ids must be kept exactly.
        if entry["message_id"] is None:
            if not stored["synthetic_id"]:
                found["message_id"] = (stored["message_id"], None)
        elif stored["message_id"] != entry["message_id"] or stored["synthetic_id"]:
            found["message_id"] = (stored["message_id"], entry["message_id"])
        if not files_as_expected(entry, stored["files"]):
            found["files"] = (unidiff_summary([FileChange(**f) for f in stored["files"]]), entry["unidiff_1_0_1"])
    if (title := expected_title(entry)) is not None and stored["title"] != title:
        found["title"] = (stored["title"], title)
    return found


def ingest_entry(store: Store, entry: dict) -> dict:
    """Take in every mail of the entry's file; the store's view of the entry's own mail."""
    outcomes = [take_in(store, raw) for raw in mails_of(entry["file"])]
    outcome = outcomes[entry["msg_index"]]
    assert outcome.status is not Status.FAILED, f"internal error filing {entry['file']}"
    record = store.mail(outcome.message_id)
    assert record is not None, f"take_in returned {outcome.message_id} but the store has no such mail"
    return mail_object(record)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "patchbot.db")
    yield store
    store.close()


def test_the_corpus_is_complete():
    """The corpus README promises 26 mails, 17 fuzzed mails and 2 bare diffs."""
    files = [entry["file"] for entry in entries()]
    assert len(files) == len(set(files)) == 45
    assert sum(name.startswith("mail/") for name in files) == 26
    assert sum(name.startswith("fuzz/") for name in files) == 17
    assert len(DIFF_ENTRIES) == 2


def test_every_deviation_names_an_entry_and_says_why():
    names = {entry["file"] for entry in MAIL_ENTRIES}
    assert set(DEVIATIONS) <= names
    assert set(DEVIATING_FIELDS) == set(DEVIATIONS)
    for name, reason in DEVIATIONS.items():
        assert len(reason.split()) >= 10 and reason.rstrip().endswith("."), f"{name}: say why, in a sentence"


@pytest.mark.parametrize("entry", MAIL_ENTRIES, ids=by_file)
def test_mail_is_stored_as_patchwork_observed(entry, store):
    stored = ingest_entry(store, entry)
    found = differences(entry, stored)
    deviating = DEVIATING_FIELDS.get(entry["file"], set())
    assert set(found) == deviating, (
        f"{entry['file']}: differs from Patchwork in {found}"
        + (f"; expected deviations only in {sorted(deviating)}" if deviating else "")
    )
    if stored["status"] == "rejected":
        assert stored["reason"], "a rejected mail must say why"
        assert stored["kind"] is None


@pytest.mark.parametrize("entry", [e for e in MAIL_ENTRIES if e["file"].startswith("mail/")], ids=by_file)
def test_the_cli_shows_the_same_mail(entry, tmp_path, capsys):
    """`patchbot ingest FILE` then `patchbot message show ID --json` prints what the store holds."""
    reference_store = Store(tmp_path / "reference.db")
    try:
        expected = ingest_entry(reference_store, entry)
    finally:
        reference_store.close()
    db = str(tmp_path / "cli.db")
    assert patchbot_main(["-q", "--db", db, "ingest", str(PATCHWORK / entry["file"])]) == 0
    capsys.readouterr()
    assert patchbot_main(["--db", db, "message", "show", expected["message_id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    for volatile in ("received_at", "origin", "series"):
        shown.pop(volatile)
        expected.pop(volatile)
    assert shown == expected
    assert set(differences(entry, shown)) == DEVIATING_FIELDS.get(entry["file"], set())


@pytest.mark.parametrize("entry", DIFF_ENTRIES, ids=by_file)
def test_bare_diff_files_match_unidiff(entry):
    text = (PATCHWORK / entry["file"]).read_text(encoding="utf-8")
    split = split_text(text.replace("\r\n", "\n"))
    assert bool(split.diff) is entry["has_diff"]
    assert split.prose.strip() == ""
    assert split.diff == text
    assert unidiff_summary(files_touched(split)) == entry["unidiff_1_0_1"]
