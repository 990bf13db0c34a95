"""Issue 11, attack 6 (one internationalised address stopped the service) and two faults of
attack 10 (a relay down past the retry window lost the reply for good; a References header of
120,000 ids stalled the scheduler for a minute).

`patchbot serve` and `patchbot run` run as processes on the sample project, mail comes in over
real LMTP, replies go to real aiosmtpd servers on 127.0.0.1 (with and without SMTPUTF8, or
down: nothing listening on the port).
"""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
from datetime import datetime, timezone
from email.utils import format_datetime

from reply.outbox_support import Handler, cli, cli_ok, relay, write_config, write_mail_files
from service.serve_support import ServiceUnderTest, sample_repo, wait_for  # noqa: F401 - a module-scoped fixture
from service.serve_support import sample_mails
from patchbot.demo.run import free_port
from patchbot.mail import parse_mail
from patchbot.mail.headers import MAX_THREAD_IDS
from patchbot.sources import RawMail
from patchbot.series.intake import take_in
from patchbot.store.database import Store

LIST = "aur-dev@lists.archlinux.org"
JOERG = "Jörg <jörg@exämple.com>"
JOERG_ADDRESS = "jörg@exämple.com"
PHP_FIX = b"<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>"
SERIES = "<joerg-fix.0@example.com>"
RETEST = "<joerg-retest@example.com>"


def joergs_series() -> bytes:
    """The sample's PHP fix as Jörg sends it: From in raw UTF-8 (RFC 6532), his own Message-ID."""
    (data,) = [data for data in sample_mails() if data.startswith(b"Message-Id: " + PHP_FIX)]
    data = data.replace(b"From: Kevin Morris <kevin@example.org>", f"From: {JOERG}".encode()).replace(PHP_FIX, SERIES.encode())
    assert JOERG.encode() in data
    return data


def joergs_retest() -> bytes:
    head = [("From", JOERG), ("To", LIST), ("Subject", "Re: [PATCH] rpc: name the limit of suggestions"),
            ("Date", format_datetime(datetime.now(timezone.utc))), ("Message-Id", RETEST),
            ("In-Reply-To", SERIES), ("References", SERIES), ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=UTF-8"), ("Content-Transfer-Encoding", "8bit")]
    return ("".join(f"{name}: {value}\r\n" for name, value in head) + "\r\npatchbot: retest\r\n").encode()


def utf8_mail(data: bytes) -> email.message.EmailMessage:
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)


def test_attack_6_a_utf8_author_and_his_retest_neither_stop_serve_nor_lose_the_replies(sample_repo, tmp_path):
    # The relay offers no SMTPUTF8: the replies go to the list without Jörg's Cc (noted), and
    # the service goes on. Once it died composing the acknowledgement, and every restart died
    # on the same interrupted command mail.
    handler = Handler()
    with relay(handler, smtputf8=False) as port:
        service = ServiceUnderTest(tmp_path, sample_repo, port)
        service.start()
        service.deliver(joergs_series())
        wait_for(lambda: handler.messages, 120, "the series' result", service)
        service.deliver(joergs_retest())
        wait_for(lambda: len(handler.messages) >= 3, 120, "the acknowledgement and the retest's result", service)
        assert service.process.poll() is None, service.log_text()
        status = json.loads(service.patchbot("status", "--json").stdout)
        assert service.stop() == 0
    answered = [str(utf8_mail(data)["In-Reply-To"]) for _, _, data in handler.messages]
    assert answered.count(SERIES) == 2 and answered.count(RETEST) == 1, answered
    assert all(recipients == (LIST,) for _, recipients, _ in handler.messages)
    assert "retest" in utf8_mail(next(data for _, _, data in handler.messages if RETEST.encode() in data)).get_content()
    assert status["outbox"] == {"sent": 3} and status["outbox_alerts"] == []
    assert "Traceback" not in service.log_text() and "not sent to jörg@exämple.com" in service.log_text()
    stored = sqlite3.connect(service.db).execute("SELECT raw, sender FROM mails WHERE message_id = ?", (SERIES,)).fetchone()
    # Stored as received (smtplib ends the data with a line break of its own).
    assert stored[0].replace(b"\r\n", b"\n").rstrip() == joergs_series().rstrip() and stored[1] == JOERG_ADDRESS


def test_attack_6_patchbot_run_answers_a_utf8_author_over_smtputf8(sample_repo, tmp_path):
    handler = Handler()
    with relay(handler, smtputf8=True) as port:
        config = write_config(tmp_path, sample_repo, port)
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", [RawMail(joergs_series(), "test")], "a"))
        cli_ok(config, "run")
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", [RawMail(joergs_retest(), "test")], "b"))
        cli_ok(config, "run")
        cli_ok(config, "run")
    assert len(handler.messages) >= 2
    for _, recipients, data in handler.messages:
        assert recipients == (LIST, JOERG_ADDRESS)
        assert [(found.display_name, found.addr_spec) for found in utf8_mail(data)["Cc"].addresses] == [("Jörg", JOERG_ADDRESS)]
    assert {str(utf8_mail(data)["In-Reply-To"]) for _, _, data in handler.messages} == {SERIES, RETEST}


def test_attack_10_a_relay_down_past_the_retry_window_keeps_the_reply_until_it_answers(sample_repo, tmp_path):
    port = free_port()  # the relay is down: nothing listens
    config = write_config(tmp_path, sample_repo, port, max_attempts=1)
    cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", [RawMail(joergs_series(), "test")], "a"))
    cli_ok(config, "run")
    cli_ok(config, "run")
    status = json.loads(cli_ok(config, "status", "--json"))
    [alert] = status["outbox_alerts"]
    assert alert["status"] == "held" and alert["attempts"] == 1 and alert["last_error"], alert  # next try in an hour
    assert "ALERT" in cli_ok(config, "status")
    handler = Handler()
    with relay(handler, smtputf8=True, port=port):
        retried = cli_ok(config, "outbox", "retry")
        assert cli_ok(config, "outbox", "retry").startswith("No held or failed reply")
    assert "Queued again" in retried and len(handler.messages) == 1
    assert str(utf8_mail(handler.messages[0][2])["In-Reply-To"]) == SERIES
    status = json.loads(cli_ok(config, "status", "--json"))
    assert status["outbox_alerts"] == [] and status["outbox"] == {"sent": 1}
    assert cli(config, "outbox", "retry", str(alert["id"])).stdout.decode().count("sent already") == 1


def _reply_with_references(references: list[str], message_id: str) -> bytes:
    return ("From: Eve Passerby <eve@example.net>\r\nTo: aur-dev@lists.archlinux.org\r\n"
            f"Subject: Re: [PATCH] a thread\r\nMessage-Id: {message_id}\r\nIn-Reply-To: {references[-1]}\r\n"
            "References: " + "\r\n ".join(references) + "\r\n"
            "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nI agree.\r\n").encode()


def test_attack_10_a_references_of_120000_ids_is_read_and_filed_with_bounded_work(tmp_path):
    store = Store(tmp_path / "patchbot.db")
    try:
        assert take_in(store, RawMail(sample_mails()[0], "test")).series_id == 1
        parent = PHP_FIX.decode()
        ordinary = _reply_with_references([parent], "<ordinary@example.net>")
        junk = [f"<junk.{number}@example.net>" for number in range(120_000)]
        flood = _reply_with_references([*junk, parent], "<flood@example.net>")
        assert len(flood) > 3_000_000

        parsed = parse_mail(flood)
        assert len(parsed.references) == MAX_THREAD_IDS and parsed.references[0] == junk[0]
        assert parsed.references[-1] == parent and parsed.thread_ids[0] == parent
        with store.statements() as ordinary_statements:
            assert take_in(store, RawMail(ordinary, "test")).series_id == 1
        with store.statements() as flood_statements:
            assert take_in(store, RawMail(flood, "test")).series_id == 1  # found through its parent
    finally:
        store.close()
    # As many statements as an ordinary reply (a lookup per id once made it 120,000), and the
    # ids remembered for the thread are the capped ones.
    assert len(flood_statements) == len(ordinary_statements) < 60, flood_statements
    known = sqlite3.connect(tmp_path / "patchbot.db").execute("SELECT count(*) FROM thread_refs").fetchone()[0]
    assert known < 2 * MAX_THREAD_IDS
