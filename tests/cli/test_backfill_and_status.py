"""`patchbot ingest --backfill` keeps the archive as history; `patchbot status` shows the queue."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from test_ingest_command import SINGLE_PATCH, patchbot

from patchbot.store.claims import CLAIMER
from patchbot.config.records import Config
from patchbot.series.intake import HISTORY
from patchbot.service.pipeline import Context, request_tests
from patchbot.store.database import Store

COMMAND_REPLY = b"""From: Lukas Fleischer <lukas@example.org>
To: aur-dev@lists.archlinux.org
Subject: Re: [PATCH] rpc: return an error for unknown types
Date: Mon, 01 Mar 2021 13:00:00 +0000
Message-Id: <reply.1@example.org>
In-Reply-To: <single.1@example.org>

patchbot: apply master
"""

REROLL = SINGLE_PATCH.replace(b"[PATCH]", b"[PATCH v2]").replace(b"<single.1@", b"<single.2@").replace(
    b"01 Mar 2021", b"08 Mar 2021")


def test_backfilled_series_are_never_tested_nor_their_commands_obeyed_but_new_versions_are(tmp_path):
    db = tmp_path / "p.db"
    archive = tmp_path / "archive.eml"
    archive.write_bytes(b"From x Mon Mar  1 12:00:00 2021\n" + SINGLE_PATCH + b"\nFrom x Mon Mar  1 13:00:00 2021\n"
                        + COMMAND_REPLY)
    result = patchbot("ingest", "--backfill", str(archive), db=db)
    assert b"1 series kept as history" in result.stderr
    store = Store(db)
    assert store.request_reasons(1) == [HISTORY] and store.pending_test_requests() == []
    assert store.unread_command_mails() == []  # the old "apply" is never read as a command
    context = Context(store, Config(), tmp_path / "work", ())
    request_tests(context)
    assert store.pending_test_requests() == []
    # A re-roll arriving later is the list's news: tested as usual.
    (tmp_path / "v2.eml").write_bytes(REROLL)
    patchbot("ingest", str(tmp_path / "v2.eml"), db=db)
    request_tests(context)
    assert [(request.series_id, request.reason) for request in store.pending_test_requests()] == [(2, "complete series")]


def test_status_shows_services_the_queue_the_outbox_and_recent_errors(tmp_path):
    db = tmp_path / "p.db"
    (tmp_path / "one.eml").write_bytes(SINGLE_PATCH)
    (tmp_path / "two.eml").write_bytes(REROLL.replace(b"rpc: return", b"web: return").replace(b"[PATCH v2]", b"[PATCH]"))
    patchbot("ingest", str(tmp_path / "one.eml"), str(tmp_path / "two.eml"), db=db)
    assert "No patchbot serve has run" in patchbot("status", db=db).stdout.decode()
    store = Store(db)
    now = datetime.now(timezone.utc)
    with store.transaction():
        store.request_test(1, "complete series")
        store.request_test(2, "complete series")
        store.claim_test_request(now, CLAIMER, timedelta(minutes=10), lambda claimer: True)
        claimed = store.claim_test_request(now, "elsewhere.example.org:1:1", timedelta(minutes=10), lambda c: True)
        store.retry_test_request(claimed.id, "elsewhere.example.org:1:1", "cannot fetch", now + timedelta(minutes=5))
        store.note_service(CLAIMER, "serving", ["lmtp unix:/run/patchbot/lmtp.sock"])
        store.note_service("elsewhere.example.org:1:1", "stopped", [])
        store.add_service_events([(now, "error", "series 2: could not be tested: cannot fetch")])
        store.enqueue_reply("k1", 1, "<r1@x>", "bot@x", ["list@x"], b"Subject: x\n\nx\n")
    text = patchbot("status", db=db).stdout.decode()
    assert f"service {CLAIMER}: serving since" in text
    assert "listening: lmtp unix:/run/patchbot/lmtp.sock" in text
    assert "tests running: 1, waiting: 0, waiting to retry: 1" in text
    assert f"running  series 1 (request 1, complete series) on {CLAIMER}" in text
    assert "retry    series 2 at " in text and "(attempt 2): cannot fetch" in text
    assert "replies: 1 to send, 0 retrying, 0 held, 0 sent, 0 failed" in text
    assert "error: series 2: could not be tested: cannot fetch" in text
    status = json.loads(patchbot("status", "--json", db=db).stdout)
    assert sorted(service["state"] for service in status["services"]) == ["serving", "stopped"]
    assert status["tests"]["retrying"][0]["last_error"] == "cannot fetch"
    assert status["outbox"] == {"pending": 1}


def test_a_dead_service_is_shown_as_dead(tmp_path: Path):
    store = Store(tmp_path / "p.db")
    with store.transaction():
        store.note_service(f"{CLAIMER.split(':')[0]}:1:999", "serving", [])  # pid 1, another start time
    status = json.loads(patchbot("status", "--json", db=tmp_path / "p.db").stdout)
    assert status["services"][0]["state"] == "dead"


def test_status_shows_live_services_and_only_the_three_latest_gone_ones(tmp_path: Path):
    store = Store(tmp_path / "p.db")
    with store.transaction():
        for start in range(6):
            store.note_service(f"elsewhere.example.org:{start}:1", "stopped", [])
        store.note_service(CLAIMER, "serving", [])
    status = json.loads(patchbot("status", "--json", db=tmp_path / "p.db").stdout)
    assert len(status["services"]) == 4
    assert sum(service["state"] == "serving" for service in status["services"]) == 1
