"""Internationalised addresses (RFC 6532) in replies: sent with SMTPUTF8 when the relay offers
it, else to the list without that address; a domain behind an ASCII local part as punycode.

A real aiosmtpd server on 127.0.0.1, once with SMTPUTF8 (enable_SMTPUTF8=True) and once
without (its default). The first tests go through the real pipeline: the sample's PHP fix sent
by `Jörg <jörg@exämple.com>` is tested and answered, and his `patchbot: retest` acknowledged.
"""

from __future__ import annotations

import dataclasses
import email.policy
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from outbox_support import aurweb_repo  # noqa: F401 - a module-scoped fixture: the sample repository
from outbox_support import LIST, Bot, Handler, message_id_of, parse, relay, sample_mails, write_config
from patchbot.config.records import Config
from patchbot.reply.compose import wire_address
from patchbot.reply.outbox import Delivery, enqueue, send_due
from patchbot.reply.report import Reply
from patchbot.sources import RawMail
from patchbot.store.database import Store

JOERG = "Jörg <jörg@exämple.com>"
JOERG_ADDRESS = "jörg@exämple.com"
PHP_FIX = "<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>"
SERIES = "<joerg-fix.0@example.com>"


class OptionsHandler(Handler):
    """Keeps the MAIL FROM options of each accepted mail as well."""

    def __init__(self) -> None:
        super().__init__()
        self.options: list[tuple[str, ...]] = []

    async def handle_DATA(self, server, session, envelope):
        self.options.append(tuple(envelope.mail_options))
        return await super().handle_DATA(server, session, envelope)


def joergs_series() -> RawMail:
    """The sample's PHP fix as Jörg sends it: his name and address in UTF-8 (RFC 6532)."""
    (raw,) = [mail for mail in sample_mails() if message_id_of(mail.data) == PHP_FIX]
    data = (raw.data.replace(b"From: Kevin Morris <kevin@example.org>", f"From: {JOERG}".encode())
            .replace(PHP_FIX.encode(), SERIES.encode()))
    assert JOERG.encode() in data and SERIES.encode() in data
    return RawMail(data, "test")


def joergs_retest() -> RawMail:
    head = [("From", JOERG), ("To", LIST), ("Subject", "Re: [PATCH] rpc: name the limit of suggestions"),
            ("Date", format_datetime(datetime.now(timezone.utc))), ("Message-Id", "<joerg-retest@example.com>"),
            ("In-Reply-To", SERIES), ("References", SERIES), ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=UTF-8"), ("Content-Transfer-Encoding", "8bit")]
    text = "".join(f"{name}: {value}\n" for name, value in head) + "\npatchbot: retest\n\nDanke, Jörg\n"
    return RawMail(text.encode(), "test")


def parse_utf8(data: bytes) -> email.message.EmailMessage:
    """A UTF-8 mail (RFC 6532) read as text: the bytes parser would keep its headers escaped."""
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)


def received(handler: Handler) -> list[tuple[str, tuple[str, ...], email.message.EmailMessage]]:
    return [(sender, recipients, parse_utf8(data)) for sender, recipients, data in handler.messages]


def test_a_series_and_a_command_from_a_utf8_address_are_answered_with_smtputf8(aurweb_repo, tmp_path):
    handler = OptionsHandler()
    with relay(handler, smtputf8=True) as port:
        bot = Bot(write_config(tmp_path, aurweb_repo, port))
        try:
            counts = bot.feed([joergs_series(), joergs_retest()])
            bot.run()
            rows = bot.store.replies()
        finally:
            bot.close()
    assert counts[0].get("replies sent") == 1, counts
    assert [row.status for row in rows] == ["sent"] * len(rows) and len(rows) >= 2, rows
    mails = received(handler)
    assert all(recipients == (LIST, JOERG_ADDRESS) for _, recipients, _ in mails), mails
    assert all("SMTPUTF8" in options for options in handler.options), handler.options
    result, ack = mails[0][2], next(mail for _, _, mail in mails if str(mail["In-Reply-To"]) == "<joerg-retest@example.com>")
    assert str(result["In-Reply-To"]) == SERIES
    for mail in (result, ack):
        assert [(found.display_name, found.addr_spec) for found in mail["Cc"].addresses] == [("Jörg", JOERG_ADDRESS)]
    assert "retest" in ack.get_content()


def test_without_smtputf8_the_reply_goes_to_the_list_without_that_cc(aurweb_repo, tmp_path, caplog):
    handler = OptionsHandler()
    with relay(handler, smtputf8=False) as port:
        bot = Bot(write_config(tmp_path, aurweb_repo, port))
        try:
            bot.feed([joergs_series(), joergs_retest()])
            rows = bot.store.replies()
        finally:
            bot.close()
    assert len(rows) >= 2 and [row.status for row in rows] == ["sent"] * len(rows)
    assert all(JOERG_ADDRESS in row.last_error and "SMTPUTF8" in row.last_error for row in rows), rows
    assert any("SMTPUTF8" in record.getMessage() and record.levelname == "WARNING" for record in caplog.records)
    assert len(handler.messages) == len(rows)
    for sender, recipients, data in handler.messages:
        head = data.split(b"\r\n\r\n", 1)[0]
        assert recipients == (LIST,) and head.isascii(), head
        mail = parse(data)
        assert mail["Cc"] is None and str(mail["To"]) == LIST
        assert mail["Message-ID"] is not None and str(mail["Subject"]).startswith("Re: ")
    assert [str(parse(data)["In-Reply-To"]) for _, _, data in handler.messages][:2] == [SERIES, "<joerg-retest@example.com>"]


def _reply(key: str, to: tuple[str, ...], cc: tuple[str, ...]) -> Reply:
    return Reply(key=key, series_id=None, subject="Re: [PATCH] fix the thing", in_reply_to="<patch.0@example.org>",
                 references=("<patch.0@example.org>",), to=to, cc=cc, body="Alle Suiten bestanden.\n", series_tag="1/v1")


def _config(port: int) -> Config:
    base = Config()
    return dataclasses.replace(
        base, mail=dataclasses.replace(base.mail, sender="patchbot <patchbot@patchbot.example.org>"),
        smtp=dataclasses.replace(base.smtp, host="127.0.0.1", port=port, retry_base_s=0.05),
    )


def test_an_international_domain_behind_an_ascii_name_goes_as_punycode(tmp_path):
    assert wire_address("joerg@exämple.com") == "joerg@xn--exmple-cua.com"
    assert wire_address(JOERG_ADDRESS) == JOERG_ADDRESS  # no ASCII form of "jörg"
    handler = OptionsHandler()
    with relay(handler, smtputf8=False) as port:
        config = _config(port)
        store = Store(tmp_path / "patchbot.db")
        try:
            assert enqueue(store, config, _reply("idna/1", (LIST,), ("Jörg Ü <joerg@exämple.com>",)))
            outcomes = send_due(store, config)
        finally:
            store.close()
    assert [outcome.result for outcome in outcomes] == [Delivery.SENT]
    ((_, recipients, data),) = handler.messages
    assert recipients == (LIST, "joerg@xn--exmple-cua.com") and "SMTPUTF8" not in handler.options[0]
    assert data.isascii()  # the name RFC 2047-encoded, the domain punycode
    (cc,) = parse(data)["Cc"].addresses
    assert (cc.display_name, cc.addr_spec) == ("Jörg Ü", "joerg@xn--exmple-cua.com")


@pytest.mark.parametrize("smtputf8", [True, False])
def test_a_reply_only_to_a_utf8_address(tmp_path, smtputf8):
    # No list: the author is the only recipient. Without SMTPUTF8 nothing can go: failed, with
    # the reason (and `patchbot outbox retry` once the relay offers it), never a crash.
    handler = OptionsHandler()
    with relay(handler, smtputf8=smtputf8) as port:
        store = Store(tmp_path / "patchbot.db")
        try:
            assert enqueue(store, _config(port), _reply("only/1", (JOERG,), ()))
            outcomes = send_due(store, _config(port))
            (row,) = store.replies()
        finally:
            store.close()
    if smtputf8:
        assert [outcome.result for outcome in outcomes] == [Delivery.SENT]
        ((_, recipients, data),) = handler.messages
        assert recipients == (JOERG_ADDRESS,) and "SMTPUTF8" in handler.options[0]
        assert str(parse_utf8(data)["To"]) == JOERG
    else:
        assert [outcome.result for outcome in outcomes] == [Delivery.FAILED]
        assert row.status == "failed" and "SMTPUTF8" in row.last_error and JOERG_ADDRESS in row.last_error
        assert handler.messages == [] and handler.mail_commands == 0
