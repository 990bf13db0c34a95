"""Send stored replies over SMTP, each exactly once, retrying what the server defers.

A reply is composed and stored (store.enqueue_reply) before any attempt to send it; it is
marked sent only after the server accepted it. A crash in between resends it with the same
Message-ID, so a rare repeat is recognisably the same mail. The dry-run mode appends replies
to an mbox instead of sending them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mailbox
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import aiosmtplib

from patchbot.claims import CLAIMER, claimer_alive
from patchbot.config import Config, SmtpConfig
from patchbot.mail.headers import address_of
from patchbot.report import Reply
from patchbot.store import OutboxItem, Store

log = logging.getLogger(__name__)

# How long a whole delivery (connect, TLS, login, data) may take: aiosmtplib's timeout is per step.
SEND_DEADLINE_S = 300
MAX_BACKOFF_S = 6 * 3600
# Longer than any delivery may take; a claim of a sender that died on this host lapses at once.
CLAIM_LEASE = timedelta(seconds=2 * SEND_DEADLINE_S)


class Delivery:
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class SendOutcome:
    key: str
    result: str  # Delivery.*
    detail: str = ""


def message_id_for(key: str, domain: str) -> str:
    """Derived from the reply's key: a resend after a crash carries the same id."""
    return f"<patchbot.{hashlib.sha256(key.encode()).hexdigest()[:24]}@{domain}>"


def _clean(value: str) -> str:
    # Values come from mails (subjects, names): no line break may reach a header.
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def compose(reply: Reply, config: Config, now: datetime | None = None) -> tuple[str, bytes]:
    """The reply as mail bytes, with its Message-ID."""
    message = EmailMessage(policy=SMTP)
    message_id = message_id_for(reply.key, config.mail.message_id_domain)
    message["From"] = _clean(config.mail.sender)
    message["To"] = ", ".join(_clean(address) for address in reply.to)
    if reply.cc:
        message["Cc"] = ", ".join(_clean(address) for address in reply.cc)
    message["Subject"] = _clean(reply.subject)
    message["Date"] = format_datetime(now or datetime.now(timezone.utc))
    message["Message-ID"] = message_id
    if reply.in_reply_to:
        message["In-Reply-To"] = _clean(reply.in_reply_to)
        message["References"] = " ".join(_clean(ref) for ref in reply.references)
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834: no auto-responder answers this
    message["X-Patchbot-Series"] = _clean(reply.series_tag)
    message.set_content(reply.body, charset="utf-8")
    return message_id, message.as_bytes()


def enqueue(store: Store, config: Config, reply: Reply) -> bool:
    """Store a reply for sending; False when this reply (by key) exists already."""
    message_id, data = compose(reply, config)
    sender = address_of(config.mail.sender).addr
    recipients = [found.addr for address in (*reply.to, *reply.cc) if (found := address_of(address))]
    with store.transaction():
        return store.enqueue_reply(reply.key, reply.series_id, message_id, sender, list(dict.fromkeys(recipients)), data)


def send_due(store: Store, config: Config, now: datetime | None = None) -> list[SendOutcome]:
    """Try every reply whose time has come and that no other sender has claimed, once each."""
    items = store.claim_due_replies(now or datetime.now(timezone.utc), CLAIMER, CLAIM_LEASE, claimer_alive)
    if not items:
        return []
    return asyncio.run(_send_all(store, config, items))


async def _send_all(store: Store, config: Config, items: list[OutboxItem]) -> list[SendOutcome]:
    outcomes = []
    password = _password(config.smtp)
    for item in items:
        if config.smtp.dry_run_mbox is not None:
            outcomes.append(_record(store, config.smtp, item, _write_to_mbox(config.smtp.dry_run_mbox, item)))
        else:
            outcomes.append(await _deliver(config.smtp, password, item, lambda outcome: _record(store, config.smtp, item, outcome)))
    return outcomes


def _password(smtp: SmtpConfig) -> str | None:
    if smtp.password_file is None:
        return None
    return smtp.password_file.read_text().strip()


def _write_to_mbox(path, item: OutboxItem) -> SendOutcome:
    box = mailbox.mbox(path)
    try:
        box.lock()
        box.add(item.data)
        box.flush()
    finally:
        box.unlock()
        box.close()
    return SendOutcome(item.key, Delivery.SENT, f"written to {path}")


async def _deliver(smtp: SmtpConfig, password: str | None, item: OutboxItem,
                   record: Callable[[SendOutcome], SendOutcome]) -> SendOutcome:
    """Send one reply and record what came of it before saying QUIT: between the server's 250
    and our record, a crash would send the reply again, so that moment is kept as short as
    it can be (RFC 1047's window; the QUIT round trip is not in it)."""
    client = aiosmtplib.SMTP(
        hostname=smtp.host, port=smtp.port, use_tls=smtp.security == "tls", start_tls=smtp.security == "starttls",
        username=smtp.username, password=password, timeout=smtp.timeout_s,
        cert_bundle=str(smtp.ca_file) if smtp.ca_file else None,
    )
    try:
        try:
            outcome = await asyncio.wait_for(_transaction(client, item), SEND_DEADLINE_S)
        except asyncio.TimeoutError:
            outcome = SendOutcome(item.key, Delivery.RETRY, f"no end to the delivery within {SEND_DEADLINE_S} s")
        outcome = record(outcome)
    finally:
        if client.is_connected:
            try:
                await asyncio.wait_for(client.quit(), smtp.timeout_s)
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                client.close()  # the reply's fate is recorded: a rude goodbye changes nothing
    return outcome


async def _transaction(client: aiosmtplib.SMTP, item: OutboxItem) -> SendOutcome:
    """Connect (TLS, login) and send; what came of it, the server's trouble included."""
    try:
        await client.connect()
        refused, response = await client.sendmail(item.sender, list(item.recipients), item.data)
    except aiosmtplib.SMTPRecipientsRefused as error:
        codes = [refusal.code for refusal in error.recipients]
        temporary = any(400 <= code < 500 for code in codes)
        return SendOutcome(item.key, Delivery.RETRY if temporary else Delivery.FAILED, f"all recipients refused: {error}")
    except aiosmtplib.SMTPResponseException as error:
        temporary = 400 <= error.code < 500
        return SendOutcome(item.key, Delivery.RETRY if temporary else Delivery.FAILED, f"{error.code} {error.message}")
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as error:
        return SendOutcome(item.key, Delivery.RETRY, f"{type(error).__name__}: {error}")
    if refused:
        # Accepted for some: sending again would repeat it to those. Note who was refused.
        detail = "; ".join(f"{address}: {code} {text}" for address, (code, text) in refused.items())
        return SendOutcome(item.key, Delivery.SENT, f"accepted, but refused for {detail}")
    return SendOutcome(item.key, Delivery.SENT, response)


def _record(store: Store, smtp: SmtpConfig, item: OutboxItem, outcome: SendOutcome) -> SendOutcome:
    """Store what came of an attempt; returns the outcome as stored (a retry past the last
    attempt is a failure)."""
    # "Sent" is kept without waiting for the disk: a killed process loses nothing written,
    # and only a power cut in the next moment could forget it (and send the reply again).
    with store.transaction(durable=outcome.result != Delivery.SENT):
        if outcome.result == Delivery.SENT:
            store.mark_reply_sent(item.id, outcome.detail if "refused" in outcome.detail else None)
            log.info("sent %s (%s)", item.message_id, item.key)
            return outcome
        if outcome.result == Delivery.RETRY and item.attempts + 1 < smtp.max_attempts:
            delay = min(smtp.retry_base_s * 2 ** item.attempts, MAX_BACKOFF_S)
            store.mark_reply_retry(item.id, outcome.detail, datetime.now(timezone.utc) + timedelta(seconds=delay))
            log.warning("deferred %s: %s; next attempt in %.0f s", item.key, outcome.detail, delay)
            return outcome
        store.mark_reply_failed(item.id, outcome.detail)
        log.error("could not send %s: %s", item.key, outcome.detail)
        return SendOutcome(item.key, Delivery.FAILED, outcome.detail)
