"""Take mail into the store once per Message-ID, parse it and file it into a series."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from patchbot.config.records import Config
from patchbot.mail import MailRejected, ParsedMail, message_id_for, parse_mail
from patchbot.series.grouping import dkim_proof, file_mail, maintainer_vouch
from patchbot.sources import RawMail, Source, UnreadableSource
from patchbot.store.connection import is_machine_fault
from patchbot.store.database import Store
from patchbot.store.records import MailFacts

log = logging.getLogger(__name__)


class Status(Enum):
    KNOWN = "already known"
    FILED = "filed"
    REJECTED = "rejected"
    FAILED = "failed"  # its handling raised: set aside until `patchbot requeue`


@dataclass(frozen=True)
class Outcome:
    message_id: str
    status: Status
    kind: str | None = None
    reason: str | None = None
    series_id: int | None = None
    mail_id: int | None = None


def keep(store: Store, raw: RawMail) -> tuple[str, int | None]:
    """Store a mail's bytes; returns its Message-ID and its row (None: already kept)."""
    message_id, synthetic = message_id_for(raw.data)
    if store.has_mail(message_id):
        return message_id, None
    return message_id, store.add_mail(message_id, synthetic, raw.data, raw.origin)


FILE_STAGE = "file mail"
MAX_ERROR_TEXT = 500


def file_kept(store: Store, mail_id: int, message_id: str, data: bytes, received_at: datetime | None = None,
              config: Config | None = None) -> Outcome:
    """Parse a kept mail and file it; bad input is rejected with its reason, never raised.
    With `config`, its maintainers may re-roll other senders' series (see series.py).

    A mail whose parsing or filing raises is set aside with the error (see `set_aside`); the
    machine's trouble (a full or read-only disk) is raised instead, and the mail stays 'new',
    to be filed once the machine recovers."""
    try:
        with store.transaction():
            try:
                mail = parse_mail(data)
            except MailRejected as rejection:
                store.reject_mail(mail_id, "rejected", str(rejection))
                return Outcome(message_id, Status.REJECTED, reason=rejection.reason.value)
            filing = file_mail(store, mail_id, mail, received_at, maintainer_vouch(config, store, mail_id, data),
                               dkim_proof(config, data))
            # The series stage may overrule the parser (an unnumbered patch in a known thread).
            rule = mail.kind_rule if filing.kind is mail.kind else filing.rule
            store.record_facts(mail_id, _facts(mail, filing.kind.value, rule))
    except Exception as error:  # a bug of ours must not stop an ingest or lose the mail
        if is_machine_fault(error):
            raise
        set_aside(store, mail_id, message_id, FILE_STAGE, error)
        return Outcome(message_id, Status.FAILED, reason="internal error")
    return Outcome(message_id, Status.FILED, kind=filing.kind.value, series_id=filing.series_id, mail_id=mail_id)


@contextmanager
def set_aside_if_it_raises(store: Store, mail_id: int, message_id: str, stage: str) -> Iterator[None]:
    """Run one mail's handling in a stage; if it raises, set the mail aside and go on with the
    next one. The machine's trouble is raised: the mail is retried once the machine recovers."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - whatever one mail makes us raise, the others go on
        if is_machine_fault(error):
            raise
        set_aside(store, mail_id, message_id, stage, error)


def set_aside(store: Store, mail_id: int, message_id: str, stage: str, error: Exception) -> None:
    """Mailman's shunt queue: a mail whose handling raised is kept as 'failed' with the stage and
    the error, logged once, shown by `patchbot status`, and left alone until `patchbot requeue`:
    one mail that makes patchbot raise must neither stop the service nor be retried at every
    pass (a command mail that raised in its acknowledgement once crashed every restart)."""
    # One line without control characters, capped: it may quote the mail, and `status` shows it.
    text = "".join(ch if ch.isprintable() else " " for ch in f"{type(error).__name__}: {error}")[:MAX_ERROR_TEXT]
    log.error("%s: %s set aside (%s); `patchbot requeue %d` retries it", stage, message_id, text, mail_id,
              exc_info=log.isEnabledFor(logging.DEBUG))
    with store.transaction():
        store.set_mail_aside(mail_id, stage, text)


def take_in(store: Store, raw: RawMail, config: Config | None = None) -> Outcome:
    """Keep and file one mail (inside the caller's transaction, if any)."""
    with store.transaction():
        message_id, mail_id = keep(store, raw)
        if mail_id is None:
            return Outcome(message_id, Status.KNOWN)
        return file_kept(store, mail_id, message_id, raw.data, config=config)


def file_new_mails(store: Store, config: Config | None = None) -> list[Outcome]:
    """File mails kept but never filed (a crash between keeping and filing leaves these)."""
    return [file_kept(store, mail.id, mail.message_id, mail.raw, mail.received_at, config) for mail in store.new_mails()]


def _facts(mail: ParsedMail, kind: str, rule: str) -> MailFacts:
    positioned = kind in ("patch", "cover", "pull")
    counter = mail.subject.counter
    if positioned and counter is None:
        counter = 0 if kind == "cover" else 1  # a lone patch is patch 1 of 1
    total = mail.subject.total if mail.subject.counter is not None else (1 if kind in ("patch", "pull") else None)
    return MailFacts(
        kind=kind, kind_rule=rule, subject=mail.subject_text, title=mail.subject.title,
        sender=mail.sender.addr, sender_name=mail.sender.name, date=mail.date,
        version=mail.subject.version if positioned else None,
        counter=counter if positioned else None, total=total if positioned else None,
        in_reply_to=mail.in_reply_to, has_diff=mail.has_diff, files=mail.files,
        trailers=mail.trailers, pull_url=mail.pull_url, message_id=mail.message_id,
        auto_submitted=mail.auto_submitted, bounce=mail.bounce,
    )


@dataclass
class IngestSummary:
    """What an ingest did, for its closing summary."""

    new: int = 0
    known: int = 0
    kinds: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    failed: int = 0
    unreadable: list[str] = field(default_factory=list)
    filed: list[Outcome] = field(default_factory=list)  # those in a series, for --backfill

    def add(self, outcome: Outcome) -> None:
        if outcome.status is Status.KNOWN:
            self.known += 1
            return
        self.new += 1
        if outcome.status is Status.FILED:
            self.kinds[outcome.kind] += 1
            if outcome.series_id is not None:
                self.filed.append(outcome)
        elif outcome.status is Status.REJECTED:
            self.rejected[outcome.reason] += 1
        else:
            self.failed += 1

    @property
    def total(self) -> int:
        return self.new + self.known


HISTORY = "back-filled from the archive: not answered"


def keep_quiet_about(store: Store, filed: list[Outcome]) -> int:
    """Treat mails back-filled from the list's archive as history: their series are never
    tested nor answered, and the commands in their replies are never obeyed. Later versions
    of those series are tested as usual. Returns how many series were silenced."""
    silenced = 0
    with store.transaction():
        for series_id in sorted({outcome.series_id for outcome in filed}):
            request = store.request_test(series_id, HISTORY, first_only=True)
            if request is not None:
                store.finish_test_request(request.id, None)
                silenced += 1
        for outcome in filed:
            if outcome.kind not in ("patch", "cover", "pull"):
                mail = store.mail_by_id(outcome.mail_id)
                if store.claim_command_mail(outcome.mail_id, outcome.series_id, mail.facts.sender or "", 0, HISTORY):
                    store.finish_command_mail(outcome.mail_id, HISTORY)
    return silenced


def ingest(store: Store, source: Source, summary: IngestSummary, progress: Callable[[], None], batch: int = 500) -> None:
    """Take in every mail of a source, committing every `batch` mails so a crash loses no more.

    A source that cannot be read (at the start or half-way) is noted in the summary; what
    was read from it before is kept.
    """
    mails = source.mails()
    while True:
        with store.transaction():
            for _ in range(batch):
                try:
                    raw = next(mails)
                except StopIteration:
                    return
                except UnreadableSource as error:
                    summary.unreadable.append(str(error))
                    return
                summary.add(take_in(store, raw))
                progress()
