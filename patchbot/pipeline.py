"""Run every pending stage once, in order, and stop: the pipeline without a daemon.

Each stage leaves its result in the store before the next one reads it, and each is safe to
run twice (a crash replays at most the stage it was in): mails are filed once, a series is
tested once per request, a reply is kept under a unique key and sent once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from patchbot.apply import GitError
from patchbot.commands.handle import handle_new_commands
from patchbot.config import Config
from patchbot.intake import Status, file_new_mails
from patchbot.loops import reason_not_to_answer
from patchbot.outbox import Delivery, enqueue, send_due
from patchbot.report import result_reply
from patchbot.store import SeriesRecord, Store
from patchbot.testrun import TestRunError, test_series

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every stage of one pass gets, and the counts it adds to."""

    store: Store
    config: Config
    work: Path
    hidden: tuple[Path, ...]
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, number: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + number


def file_mail(context: Context) -> None:
    """Mails kept but not yet filed (a delivery or a crash left them)."""
    outcomes = file_new_mails(context.store)
    context.count("mails filed", sum(outcome.status is Status.FILED for outcome in outcomes))


def request_tests(context: Context) -> None:
    """Every complete, current series that may be answered gets its first test request."""
    for series in context.store.all_series():
        if not series.complete or series.obsolete or series.ignored:
            continue
        reason = _reason_to_stay_quiet(context, series)
        if reason:
            log.info("series %d: not testing: %s", series.id, reason)
            continue
        with context.store.transaction():
            if context.store.request_test(series.id, "complete series", first_only=True):
                context.count("tests requested")


def run_tests(context: Context) -> None:
    """Test each requested series and keep the reply for it in the outbox."""
    store = context.store
    for request in store.pending_test_requests():
        series = store.series(request.series_id)
        if series.obsolete or series.ignored:
            with store.transaction():
                store.finish_test_request(request.id, None)
            log.info("series %d: %s before it was tested", series.id, "ignored" if series.ignored else "superseded")
            continue
        log.info("series %d v%d: testing (%s)", series.id, series.version, request.reason)
        try:
            test_series(store, context.config, series.id, work=context.work, hidden=context.hidden,
                        base_ref=request.base_ref, only_suite=request.suite)
        except (GitError, TestRunError) as error:
            # The request stays pending: the next pass tries again.
            log.error("series %d: could not be tested: %s", series.id, error)
            context.count("tests that could not run")
            continue
        run = store.latest_test_run(series.id)
        reply = result_reply(store, context.config, series, run, request.number)
        queued = enqueue(store, context.config, reply)
        with store.transaction():
            store.finish_test_request(request.id, run.id)
        context.count("series tested")
        context.count("replies queued", int(queued))


def handle_commands(context: Context) -> None:
    """Act on the commands of replies not read yet, once each, and acknowledge them."""
    for name, number in handle_new_commands(context.store, context.config, context.work).items():
        context.count(name, number)


def send_replies(context: Context) -> None:
    for outcome in send_due(context.store, context.config):
        context.count({Delivery.SENT: "replies sent", Delivery.RETRY: "replies deferred",
                       Delivery.FAILED: "replies failed"}[outcome.result])


# The pipeline, in order.
STAGES: tuple[tuple[str, Callable[[Context], None]], ...] = (
    ("file mail", file_mail),
    ("handle commands", handle_commands),
    ("request tests", request_tests),
    ("run tests", run_tests),
    ("send replies", send_replies),
)


def run_pending(store: Store, config: Config, work: Path, hidden: tuple[Path, ...]) -> dict[str, int]:
    """One pass over every stage; returns what each did, by name."""
    context = Context(store, config, work, hidden)
    for name, stage in STAGES:
        log.debug("stage: %s", name)
        stage(context)
    return context.counts


def _reason_to_stay_quiet(context: Context, series: SeriesRecord) -> str | None:
    mail_ids = [series.cover_mail_id] if series.cover_mail_id else []
    mail_ids += [slot.mail_id for slot in series.patches if not slot.inherited]
    for mail_id in mail_ids:
        facts = context.store.mail_by_id(mail_id).facts
        if facts and (reason := reason_not_to_answer(facts, context.config)):
            return reason
    return None
