"""`patchbot requeue` puts mails set aside back; `patchbot status` lists them with their error."""

from __future__ import annotations

import json

from test_ingest_command import SINGLE_PATCH, patchbot

from patchbot.series.intake import set_aside
from patchbot.store.database import Store

OTHER_PATCH = SINGLE_PATCH.replace(b"<single.1@", b"<single.9@").replace(b"return an error", b"say why")


def _set_aside_after_ingest(tmp_path) -> tuple:
    """Two patches ingested, then set aside as a bug of ours (fixed since) raising while handling
    them would have; the store's own call, since no input is known to raise once fixed."""
    db = tmp_path / "p.db"
    for number, data in enumerate((SINGLE_PATCH, OTHER_PATCH)):
        (tmp_path / f"{number}.eml").write_bytes(data)
        patchbot("ingest", str(tmp_path / f"{number}.eml"), db=db)
    store = Store(db)
    ids = []
    for message_id in ("<single.1@example.org>", "<single.9@example.org>"):
        mail = store.mail(message_id)
        set_aside(store, mail.id, message_id, "handle commands", RuntimeError(f"a bug hit by {message_id}"))
        ids.append(mail.id)
    return db, store, ids


def test_status_lists_mails_set_aside_with_stage_and_error(tmp_path):
    db, _, ids = _set_aside_after_ingest(tmp_path)
    listed = json.loads(patchbot("status", "--json", db=db).stdout)["failed_mails"]
    assert [(mail["id"], mail["stage"], mail["error"]) for mail in listed] == [
        (ids[0], "handle commands", "RuntimeError: a bug hit by <single.1@example.org>"),
        (ids[1], "handle commands", "RuntimeError: a bug hit by <single.9@example.org>")]
    text = patchbot("status", db=db).stdout.decode()
    assert "mails set aside (their handling raised; `patchbot requeue ID` or `--all` retries them): 2" in text
    assert f'{ids[0]}  <single.1@example.org> in "handle commands" at ' in text


def test_requeue_by_id_or_message_id_or_all(tmp_path):
    db, store, ids = _set_aside_after_ingest(tmp_path)
    one = patchbot("requeue", str(ids[0]), db=db)
    assert one.returncode == 0 and one.stdout == f"1 mail put back: {ids[0]}\n".encode()
    assert store.mail_by_id(ids[0]).status == "filed"  # it was filed: it is read for commands again
    again = patchbot("requeue", str(ids[0]), "single.9@example.org", db=db)
    assert again.returncode == 0 and again.stdout == f"1 mail put back: {ids[1]}\n".encode()
    assert f"mail {ids[0]} is not set aside".encode() in again.stderr
    assert patchbot("requeue", "--all", db=db).stdout == b"0 mails put back: -\n"
    assert store.failed_mails() == []


def test_requeue_needs_ids_or_all_and_says_what_it_does_not_know(tmp_path):
    db, _, ids = _set_aside_after_ingest(tmp_path)
    assert patchbot("requeue", db=db, check=False).returncode == 2
    assert patchbot("requeue", str(ids[0]), "--all", db=db, check=False).returncode == 2
    unknown = patchbot("requeue", "nobody@example.org", db=db, check=False)
    assert unknown.returncode == 5 and b"no mail nobody@example.org is stored" in unknown.stderr
    assert patchbot("requeue", "999", db=db, check=False).returncode == 5  # nothing put back
    assert len(json.loads(patchbot("status", "--json", db=db).stdout)["failed_mails"]) == 2
