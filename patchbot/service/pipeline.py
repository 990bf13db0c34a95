"""Run every pending stage once, in order, and stop: the pipeline without a daemon.

Each stage leaves its result in the store before the next one reads it, and each is safe to
run twice (a crash replays at most the stage it was in): mails are filed once, a series is
tested once per request, a reply is kept under a unique key and sent once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from patchbot.testing.apply import GitError
from patchbot.reply.audience import addressed_result, addressed_superseded
from patchbot.store.claims import CLAIMER, claimer_alive
from patchbot.commands.handle import handle_new_commands
from patchbot.config.records import Config
from patchbot.series.intake import Status, file_new_mails
from patchbot.reply.loops import reason_not_to_answer
from patchbot.reply.outbox import Delivery, enqueue, send_due
from patchbot.reply.report import result_reply, superseded_reply
from patchbot.reply.not_tested import not_tested_reply
from patchbot.store.connection import is_machine_fault
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord, TestRequest
from patchbot.testing.errors import TestRunError
from patchbot.testing.run import TestRun, keep_test_run, run_test

log = logging.getLogger(__name__)

# A test the machine failed waits `[serve] retry_base` seconds, doubling, at most MAX_RETRY_S; one
# whose run raised (a bug, a full disk) waits RETRY_BASE_S, doubling, and is retried for ever.
RETRY_BASE_S = 60
MAX_RETRY_S = 3600


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
    outcomes = file_new_mails(context.store, context.config)
    context.count("mails filed", sum(outcome.status is Status.FILED for outcome in outcomes))


def request_tests(context: Context) -> None:
    """Every series that may be answered gets its first test request: a complete one at once, an
    incomplete one with what it has when its grace period ends after its newest mail (and again
    once it is complete). A superseded version is requested too: "run tests" answers it with a
    note instead of a test, so that every version hears back once."""
    now = datetime.now(timezone.utc)
    for series in context.store.all_series():
        # A pull request's code is its branch: a [PULL 0/N] cover whose patches never come is tested.
        if series.ignored or (not series.patches and series.pull is None) or (series.obsolete and not series.complete):
            continue
        try:
            _request_test_of(context, series, now)
        except Exception as error:  # noqa: BLE001 - one series' trouble must not hold up the others
            if is_machine_fault(error):
                raise
            if _SERIES_ERRORS.get(series.id) != str(error):  # once, not at every pass
                log.error("series %d: cannot decide whether to test it: %s: %s", series.id, type(error).__name__, error)
                _SERIES_ERRORS[series.id] = str(error)


_SERIES_ERRORS: dict[int, str] = {}  # the error last logged per series


def _request_test_of(context: Context, series: SeriesRecord, now: datetime) -> None:
    reason = _test_reason(context, series, now)
    if reason is None:
        return
    quiet = _reason_to_stay_quiet(context, series)
    if quiet:
        log.info("series %d: not testing: %s", series.id, quiet)
        return
    with context.store.transaction():
        first_only = reason == COMPLETE
        if context.store.request_test(series.id, reason, first_only=first_only):
            log.info("series %d v%d: test requested (%s)", series.id, series.version, reason)
            context.count("tests requested")


COMPLETE = "complete series"
INCOMPLETE = "incomplete series, grace period over"
COMPLETED = "series completed after an incomplete test"


def _test_reason(context: Context, series: SeriesRecord, now: datetime) -> str | None:
    reasons = context.store.request_reasons(series.id)
    if series.complete:
        if not reasons:
            return COMPLETE
        return COMPLETED if reasons == [INCOMPLETE] else None
    if reasons:
        return None
    last = context.store.last_received(series.id)
    if last is not None and now - last >= timedelta(seconds=context.config.serve.grace_s):
        return INCOMPLETE
    return None


@dataclass(frozen=True)
class Tested:
    """What came of one claimed test request."""

    request: TestRequest
    outcome: str  # tested | dropped | could not run (retried later) | not tested (retries spent)
    detail: str = ""


def test_requested(store: Store, config: Config, work: Path, hidden: tuple[Path, ...], request: TestRequest,
                   claimer: str = CLAIMER) -> Tested:
    """Test one claimed request, and keep its run, its reply and its end in one transaction.

    A crash before that commit leaves the request claimed by a dead process: it is run again,
    and nothing of the first attempt was kept. A run the machine failed is not answered but
    retried (machine_failed)."""
    series = store.series(request.series_id)
    if series.ignored:  # the acknowledgement of "ignore" said so: nothing more to send
        with store.transaction():
            store.finish_test_request(request.id, None, claimer)
        log.info("series %d: ignored before it was tested", series.id)
        return Tested(request, "dropped", "ignored")
    if series.obsolete:  # every version is answered once: this one with why it was not tested
        with store.transaction():
            if store.finish_test_request(request.id, None, claimer):
                note = addressed_superseded(config, series, superseded_reply(
                    store, config, series, store.newer_version(series.id), request.number))
                if note is not None:  # [reply] results: who hears it (patchbot.reply.audience)
                    enqueue(store, config, note)
        log.info("series %d v%d: superseded before it was tested", series.id, series.version)
        return Tested(request, "dropped", "superseded")
    log.info("series %d v%d: testing (%s)", series.id, series.version, request.reason)
    try:
        # A retry runs the base again, like a retest: the base run that could not judge may be the
        # very thing the machine got wrong.
        run = run_test(store, config, series.id, work=work, hidden=hidden, base_ref=request.base_ref,
                       only_suite=request.suite, fresh_base=request.number > 1 or request.attempts > 0)
    except (GitError, TestRunError) as error:
        return machine_failed(store, config, series, request, claimer, None, str(error))
    if run.verdict is not None and run.verdict.infra_errors:
        return machine_failed(store, config, series, request, claimer, run, _infra_error_text(run))
    with store.transaction():
        run_id = keep_test_run(store, run)
        if not store.finish_test_request(request.id, run_id, claimer):
            # Our lease lapsed and another worker took the request: its result counts.
            raise _ClaimLost(request.id)
        stored = store.test_run(run_id)
        reply = addressed_result(store, config, series, stored, request,  # [reply]: who hears it, if anyone
                                 result_reply(store, config, series, stored, request.number))
        queued = reply is not None and enqueue(store, config, reply)
    log.info("series %d v%d: %s; reply %s", series.id, series.version, run.summary()["outcome"],
             "queued" if queued else "not mailed ([reply] results)" if reply is None else "was queued already")
    return Tested(request, "tested", run.summary()["outcome"])


def machine_failed(store: Store, config: Config, series: SeriesRecord, request: TestRequest, claimer: str,
                   run: TestRun | None, error: str) -> Tested:
    """A test the machine failed: it could not start (`run` None: git, the repository), or a suite
    could not run or cannot judge (issue 12 item 6). The list hears nothing: the run is kept for
    `status` and `series show`, and the request waits `[serve] retry_base` seconds, doubling.
    Once `[serve] infra_retries` retries are spent, the request ends given up, with one short
    reply that the series could not be tested, enqueued in the same transaction."""
    attempt = request.attempts + 1
    spent = request.attempts >= config.serve.infra_retries
    delay = retry_delay(config.serve.retry_base_s, request.attempts)
    with store.transaction():
        run_id = keep_test_run(store, run) if run is not None else None
        if spent:
            if not store.give_up_test_request(request.id, run_id, claimer, error):
                raise _ClaimLost(request.id)
            stored = store.test_run(run_id) if run_id is not None else None
            enqueue(store, config, not_tested_reply(store, config, series, stored, request.number, attempt))
        elif not store.retry_test_request(request.id, claimer, error,
                                          datetime.now(timezone.utc) + timedelta(seconds=delay)):
            raise _ClaimLost(request.id)
    if spent:
        log.error("series %d v%d: not tested, the machine failed %d times; the list is told once: %s",
                  series.id, series.version, attempt, error)
        return Tested(request, "not tested", error)
    log.error("series %d v%d: the machine failed (attempt %d of %d, next in %.1f s): %s",
              series.id, series.version, attempt, config.serve.infra_retries + 1, delay, error)
    return Tested(request, "could not run", error)


def retry_delay(base_s: float, attempts: int) -> float:
    """The wait before the next try of a request that failed `attempts` times: doubling, capped."""
    return min(base_s * 2 ** attempts, MAX_RETRY_S)


def _infra_error_text(run: TestRun) -> str:
    """For the operator: every suite the machine failed, with its whole detail."""
    return "; ".join(f"{verdict.suite}: {verdict.detail or 'infrastructure error'}"
                     for verdict in run.verdict.suites if verdict.suite in run.verdict.infra_errors)


class _ClaimLost(Exception):
    pass


def release_after_error(store: Store, request: TestRequest, error: BaseException, claimer: str = CLAIMER) -> None:
    """A run that raised goes back to the queue, tried again after a wait that doubles with each
    attempt. If the store cannot take even that, the claim lapses with its lease (only running
    tests' leases are renewed) and another worker takes the request."""
    delay = retry_delay(RETRY_BASE_S, request.attempts)
    try:
        with store.transaction():
            store.retry_test_request(request.id, claimer, f"{type(error).__name__}: {error}",
                                     datetime.now(timezone.utc) + timedelta(seconds=delay))
    except Exception as store_error:  # noqa: BLE001 - the lease lets go of it instead
        log.error("test request %d: cannot let go of it now (%s); its claim lapses", request.id, store_error)


def claim_test(store: Store, config: Config, claimer: str = CLAIMER) -> TestRequest | None:
    lease = timedelta(seconds=config.serve.lease_s)
    return store.claim_test_request(datetime.now(timezone.utc), claimer, lease, claimer_alive)


def run_tests(context: Context) -> None:
    """Test each requested series (one claim at a time) and keep the reply for it in the outbox."""
    while (request := claim_test(context.store, context.config)) is not None:
        try:
            tested = test_requested(context.store, context.config, context.work, context.hidden, request)
        except _ClaimLost:
            log.warning("test request %d: taken over by another worker while it ran", request.id)
            continue
        except Exception as error:  # noqa: BLE001 - back to the queue, not claimed by a dead run for ever
            log.error("series %d: test failed: %s: %s", request.series_id, type(error).__name__, error)
            release_after_error(context.store, request, error)
            if is_machine_fault(error):
                raise  # the next claims would meet the same disk
            continue
        context.count({"tested": "series tested", "dropped": "tests dropped", "could not run": "tests that could not run",
                       "not tested": "series not tested"}[tested.outcome])


def handle_commands(context: Context) -> None:
    """Act on the commands of replies not read yet, once each, and acknowledge them."""
    for name, number in handle_new_commands(context.store, context.config, context.work).items():
        context.count(name, number)


def send_replies(context: Context) -> None:
    for outcome in send_due(context.store, context.config):
        context.count({Delivery.SENT: "replies sent", Delivery.RETRY: "replies deferred",
                       Delivery.FAILED: "replies failed"}[outcome.result])


# The pipeline, in order. A series' own first test is requested before the commands of the
# same pass act, so that a retest sent in the same burst as its patch is a second test, as it
# is when the burst is split over two passes (the answer does not depend on delivery timing).
STAGES: tuple[tuple[str, Callable[[Context], None]], ...] = (
    ("file mail", file_mail),
    ("request tests", request_tests),
    ("handle commands", handle_commands),
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
