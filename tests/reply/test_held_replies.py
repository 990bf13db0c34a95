"""A relay down longer than the retry window: the replies are held (not failed), shown in
`patchbot status`, tried every hour, and sent by `patchbot outbox retry` once the relay is up.
A reply refused for good stays failed, and `outbox retry` can still send it.

Real aiosmtpd servers on 127.0.0.1 (down: nothing listens on the port); the replies are made
by hand (no pipeline, no sandbox), the commands run as the operator runs them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from outbox_support import Handler, cli, cli_ok, smtp_server
from patchbot.config.load import load_config
from patchbot.demo.run import free_port
from patchbot.reply.outbox import HELD_RETRY_S, Delivery, enqueue, send_due
from patchbot.reply.report import Reply
from patchbot.store.database import Store

LIST = "aur-dev@lists.archlinux.org"


def write_config(folder: Path, port: int, **smtp: object) -> Path:
    path = folder / "patchbot.toml"
    settings = {"host": "127.0.0.1", "port": port, "retry_base": 0.05, "max_attempts": 2, **smtp}
    path.write_text(
        f'[store]\ndb = "{folder / "patchbot.db"}"\n\n'
        '[mail]\nfrom = "patchbot <patchbot@patchbot.example.org>"\nlist = "aur-dev@lists.archlinux.org"\n\n'
        "[smtp]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    )
    return path


def queue_replies(config_path: Path, count: int = 2) -> list[str]:
    """`count` replies in the outbox, made by hand; their Message-IDs."""
    config = load_config(config_path)
    store = Store(config.db)
    try:
        for number in range(1, count + 1):
            assert enqueue(store, config, Reply(
                key=f"held/{number}", series_id=None, subject=f"Re: [PATCH {number}/{count}] fix",
                in_reply_to=f"<patch.{number}@example.org>", references=(f"<patch.{number}@example.org>",),
                to=(LIST,), cc=("Ann Author <ann@example.org>",), body="Every suite passed.\n", series_tag="1/v1"))
        return [item.message_id for item in store.replies()]
    finally:
        store.close()


def send_until_nothing_pending(config_path: Path) -> list:
    config = load_config(config_path)
    store = Store(config.db)
    outcomes = []
    try:
        for _ in range(50):
            if not store.replies("pending"):
                return outcomes
            outcomes += send_due(store, config, now=datetime.now(timezone.utc) + timedelta(seconds=1))
        raise AssertionError([(item.key, item.status, item.attempts) for item in store.replies()])
    finally:
        store.close()


def status_json(config_path: Path) -> dict:
    return json.loads(cli_ok(config_path, "status", "--json"))


def test_a_relay_down_past_the_window_holds_the_replies_until_outbox_retry(tmp_path):
    port = free_port()  # nothing listens: connection refused
    config = write_config(tmp_path, port)
    ids = queue_replies(config)
    outcomes = send_until_nothing_pending(config)
    assert [outcome.result for outcome in outcomes] == [Delivery.RETRY] * 4  # two attempts each: the window

    status = status_json(config)
    assert status["outbox"].get("held") == 2 and "failed" not in status["outbox"]
    alerts = status["outbox_alerts"]
    assert [(alert["key"], alert["status"], alert["attempts"]) for alert in alerts] == [("held/1", "held", 2), ("held/2", "held", 2)]
    assert all(alert["last_error"] and alert["next_attempt_at"] for alert in alerts)
    text = cli_ok(config, "status")
    assert "ALERT  reply 1 (held/1) held" in text and "patchbot outbox retry" in text
    listing = cli_ok(config, "outbox", "list")
    assert "held" in listing and "held/2" in listing and "patchbot outbox retry" in listing
    listed = json.loads(cli_ok(config, "outbox", "list", "--json"))
    assert [(reply["id"], reply["status"], reply["attempts"]) for reply in listed] == [(1, "held", 2), (2, "held", 2)]

    handler = Handler()
    with smtp_server(handler, port):  # the relay answers again
        # Not due before its hourly try: a pass now sends nothing by itself.
        store = Store(load_config(config).db)
        try:
            assert send_due(store, load_config(config)) == []
        finally:
            store.close()
        assert handler.messages == []
        retried = cli_ok(config, "outbox", "retry")
    assert "Queued again: reply 1, 2." in retried and retried.count("sent ") == 2, retried
    assert sorted(handler.message_ids()) == sorted(ids)
    status = status_json(config)
    assert status["outbox_alerts"] == [] and status["outbox"] == {"sent": 2}
    assert "ALERT" not in cli_ok(config, "status")
    assert cli_ok(config, "outbox", "retry").startswith("No held or failed reply")
    assert cli_ok(config, "outbox", "list").startswith("No reply is waiting")
    assert [reply["status"] for reply in json.loads(cli_ok(config, "outbox", "list", "--all", "--json"))] == ["sent"] * 2


def test_a_held_reply_goes_out_by_itself_at_its_hourly_try(tmp_path):
    port = free_port()
    config_path = write_config(tmp_path, port)
    queue_replies(config_path, count=1)
    send_until_nothing_pending(config_path)
    config = load_config(config_path)
    store = Store(config.db)
    try:
        (item,) = store.replies()
        assert (item.status, item.attempts) == ("held", 2)
        due = item.next_attempt_at
        assert timedelta(seconds=HELD_RETRY_S - 60) <= due - datetime.now(timezone.utc) <= timedelta(seconds=HELD_RETRY_S)
        handler = Handler()
        with smtp_server(handler, port):
            assert send_due(store, config, now=due - timedelta(seconds=1)) == []  # not before its time
            outcomes = send_due(store, config, now=due)
        assert [outcome.result for outcome in outcomes] == [Delivery.SENT]
        assert len(handler.messages) == 1
        assert [(item.status, item.attempts) for item in store.replies()] == [("sent", 3)]
    finally:
        store.close()


def test_a_reply_refused_for_good_stays_failed_and_outbox_retry_can_send_it(tmp_path):
    refusing = Handler(fail_data=1000, fail_reply="554 5.7.1 Relay access denied")
    with smtp_server(refusing) as port:
        config = write_config(tmp_path, port)
        queue_replies(config)
        outcomes = send_until_nothing_pending(config)
        assert [outcome.result for outcome in outcomes] == [Delivery.FAILED] * 2
        assert send_until_nothing_pending(config) == []  # failed: never tried by itself again
    status = status_json(config)
    assert [(alert["id"], alert["status"]) for alert in status["outbox_alerts"]] == [(1, "failed"), (2, "failed")]
    assert all("554" in alert["last_error"] for alert in status["outbox_alerts"])

    handler = Handler()
    with smtp_server(handler, port):  # the relay's configuration was fixed
        retried = cli_ok(config, "outbox", "retry", "2")
        assert "Queued again: reply 2." in retried
        again = cli_ok(config, "outbox", "retry", "2")
        missing = cli(config, "outbox", "retry", "99")
    assert "Reply 2 was sent already" in again
    assert missing.returncode == 5 and b"no reply 99" in missing.stderr
    assert len(handler.messages) == 1  # reply 2, once
    status = status_json(config)
    assert [(alert["id"], alert["status"]) for alert in status["outbox_alerts"]] == [(1, "failed")]
