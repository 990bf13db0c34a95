"""Send stored replies over SMTP, each exactly once, retrying what the server defers.

A reply is composed and stored (store.enqueue_reply) before any attempt to send it; it is marked
sent only after the server accepted it. A crash in between resends it with the same Message-ID, so a
rare repeat is recognisably the same mail. The dry-run mode appends replies to an mbox instead of
sending them.

A relay that stays down longer than the retry window ([smtp] max_attempts) leaves its replies held:
`patchbot status` shows them, they are tried again every hour, and `patchbot outbox retry` tries at
once. A reply the server refused for good (5xx) is failed; `outbox retry` can still queue it again.

Addresses may be internationalised (RFC 6532, "jörg@exämple.com"). A domain behind an ASCII local
part goes out as punycode (IDNA) and needs nothing more; a non-ASCII local part needs SMTPUTF8 (RFC
6531): such a reply is stored as UTF-8 and sent with SMTPUTF8 when the relay offers it, else without
those recipients (to the list), and the log says so.

Threading headers are written as mail software expects them (see compose): In-Reply-To and
References as raw `<id>` tokens folded only between ids, a Subject folded only after its first word,
and a Message-ID made from this database's random id and the reply's key.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.policy import SMTPUTF8

import aiosmtplib

from patchbot.store.claims import CLAIMER, claimer_alive
from patchbot.config.records import Config, SmtpConfig
from patchbot.mail.headers import address_of
from patchbot.reply.compose import _people, compose, needs_smtputf8, wire_address, without_recipients
from patchbot.reply.report import Reply
from patchbot.store.database import Store
from patchbot.store.records import OutboxItem

log = logging.getLogger(__name__)


# How long a whole delivery (connect, TLS, login, data) may take: aiosmtplib's timeout is per step.
SEND_DEADLINE_S = 300
MAX_BACKOFF_S = 6 * 3600
# Past the retry window a reply is held, and tried again this often until the relay takes it.
HELD_RETRY_S = 3600
# Longer than any delivery may take; a claim of a sender that died on this host lapses at once.
CLAIM_LEASE = timedelta(seconds=2 * SEND_DEADLINE_S)


class Delivery:
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class SendOutcome:
    key: str
    result: str  # Delivery.* (a reply held past the retry window is a RETRY)
    detail: str = ""
    note: str | None = None  # kept with a sent reply: who did not get it, and why


def enqueue(store: Store, config: Config, reply: Reply) -> bool:
    """Store a reply for sending; False when this reply (by key) exists already."""
    message_id, data = compose(reply, config, instance=store.instance_id())
    sender = wire_address(address_of(config.mail.sender).addr)
    recipients = [person.addr for person in _people((*reply.to, *reply.cc))]
    with store.transaction():
        return store.enqueue_reply(reply.key, reply.series_id, message_id, sender, list(dict.fromkeys(recipients)), data)


@dataclass(frozen=True)
class Requeued:
    """What `patchbot outbox retry` did with the replies it was given."""

    queued: tuple[int, ...]
    sent: tuple[int, ...] = ()  # named, but sent already: a reply is never sent twice
    unknown: tuple[int, ...] = ()  # no such reply
    waiting: tuple[int, ...] = ()  # named, but queued already (pending)


def requeue(store: Store, item_ids: Sequence[int] | None = None) -> Requeued:
    """Queue held and failed replies (these, or every one) to be sent now, with a fresh window."""
    queued = store.requeue_replies(item_ids)
    if item_ids is None:
        return Requeued(tuple(queued))
    found = {item_id: store.reply(item_id) for item_id in item_ids if item_id not in queued}
    return Requeued(
        tuple(queued),
        sent=tuple(item_id for item_id, item in found.items() if item and item.status == "sent"),
        unknown=tuple(item_id for item_id, item in found.items() if item is None),
        waiting=tuple(item_id for item_id, item in found.items() if item and item.status == "pending"),
    )


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
    note = None
    try:
        await client.connect()
        sender, recipients, data, options = item.sender, list(item.recipients), item.data, []
        if any(map(needs_smtputf8, (sender, *recipients))):
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            if client.supports_extension("smtputf8"):
                options = ["SMTPUTF8"]
            else:
                dropped = [address for address in recipients if needs_smtputf8(address)]
                recipients = [address for address in recipients if not needs_smtputf8(address)]
                if needs_smtputf8(sender) or not recipients:
                    return SendOutcome(item.key, Delivery.FAILED, "the relay does not offer SMTPUTF8, which "
                                       + ", ".join(dropped or [sender]) + " needs")
                note = f"not sent to {', '.join(dropped)}: the relay does not offer SMTPUTF8, which the address needs"
                log.warning("reply %s: %s", item.key, note)
                data = without_recipients(item.data, set(dropped))
        refused, response = await client.sendmail(sender, recipients, data, mail_options=options)
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
        note = "; ".join(filter(None, (note, f"accepted, but refused for {detail}")))
    return SendOutcome(item.key, Delivery.SENT, note or response, note)


def _record(store: Store, smtp: SmtpConfig, item: OutboxItem, outcome: SendOutcome) -> SendOutcome:
    """Store what came of an attempt; returns the outcome as stored (a retry past the last
    attempt is a failure)."""
    # "Sent" is kept without waiting for the disk: a killed process loses nothing written,
    # and only a power cut in the next moment could forget it (and send the reply again).
    with store.transaction(durable=outcome.result != Delivery.SENT):
        if outcome.result == Delivery.SENT:
            store.mark_reply_sent(item.id, outcome.note)
            log.info("sent %s (%s)", item.message_id, item.key)
            return outcome
        if outcome.result == Delivery.RETRY and item.attempts + 1 < smtp.max_attempts:
            delay = min(smtp.retry_base_s * 2 ** item.attempts, MAX_BACKOFF_S)
            store.mark_reply_retry(item.id, outcome.detail, datetime.now(timezone.utc) + timedelta(seconds=delay))
            log.warning("deferred %s: %s; next attempt in %.0f s", item.key, outcome.detail, delay)
            return outcome
        if outcome.result == Delivery.RETRY:
            # The relay has been down (or deferring) for the whole window: the reply is not given
            # up (once it was, and nothing could send it again) but held, shown in `patchbot
            # status`, and tried every hour until the relay takes it or the operator retries.
            store.hold_reply(item.id, outcome.detail, datetime.now(timezone.utc) + timedelta(seconds=HELD_RETRY_S))
            # An error once, when it is held; its hourly tries after that are warnings.
            report = log.warning if item.status == "held" else log.error
            report("reply %d (%s) held: not taken in %d attempts (%s); tried again every %d minutes,"
                   " or now with `patchbot outbox retry %d`", item.id, item.key, item.attempts + 1,
                   outcome.detail, HELD_RETRY_S // 60, item.id)
            return outcome
        store.mark_reply_failed(item.id, outcome.detail)
        log.error("could not send %s: %s (reply %d: `patchbot outbox retry %d` queues it again)",
                  item.key, outcome.detail, item.id, item.id)
        return SendOutcome(item.key, Delivery.FAILED, outcome.detail)
