"""What `patchbot status` shows: the services, mails set aside, the queue of tests, the outbox, recent errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from patchbot.store.claims import claimer_alive
from patchbot.text.render import render
from patchbot.store.records import OutboxItem
from patchbot.store.database import Store
from patchbot.store.records import FailedMail, ServiceRecord, TestRequest

RECENT_EVENTS = 10
PAST_SERVICES = 3  # stopped or dead services shown, newest first


@dataclass(frozen=True)
class QueueStatus:
    now: datetime
    services: tuple[tuple[ServiceRecord, bool], ...]  # each with whether its process lives
    unfiled_mails: int
    failed_mails: tuple[FailedMail, ...]  # set aside: their handling raised (`patchbot requeue`)
    running: tuple[TestRequest, ...]  # claimed by a live worker
    waiting: tuple[TestRequest, ...]  # to be claimed (due now)
    retrying: tuple[TestRequest, ...]  # the machine failed it (could not start, run or judge); due later
    given_up: tuple[TestRequest, ...]  # retries spent, the list told it was not tested: the operator's error
    outbox: dict[str, int]  # pending, retrying, held, sent, failed
    unsent_replies: tuple[OutboxItem, ...]  # held past the retry window, or refused: the operator's to see
    events: tuple[tuple[datetime, str, str], ...]  # newest first


def status_of(store: Store, now: datetime) -> QueueStatus:
    running, waiting, retrying = [], [], []
    for request in store.pending_test_requests():
        if request.claimed_by and request.claimed_until > now and claimer_alive(request.claimed_by):
            running.append(request)
        elif request.next_attempt_at is not None and request.next_attempt_at > now:
            retrying.append(request)
        else:
            waiting.append(request)
    services = [(service, service.state != "stopped" and claimer_alive(service.claimer)) for service in store.services()]
    # Every start leaves a row: show the live services and only the latest of the others.
    gone = [entry for entry in services if not entry[1]][:PAST_SERVICES]
    return QueueStatus(
        now=now,
        services=tuple(entry for entry in services if entry[1] or entry in gone),
        unfiled_mails=store.count_mails().get("new", 0),
        failed_mails=tuple(store.failed_mails()),
        running=tuple(running), waiting=tuple(waiting), retrying=tuple(retrying),
        given_up=tuple(store.given_up_test_requests()),
        outbox=store.outbox_counts(),
        unsent_replies=tuple(sorted(store.replies("held") + store.replies("failed"), key=lambda item: item.id)),
        events=tuple(store.service_events(RECENT_EVENTS)),
    )


def _request_object(request: TestRequest) -> dict:
    return {
        "id": request.id, "series": request.series_id, "number": request.number, "reason": request.reason,
        "base": request.base_ref, "suite": request.suite, "claimed_by": request.claimed_by,
        "started_at": request.started_at.isoformat() if request.started_at else None,
        "attempts": request.attempts, "last_error": request.last_error,
        "next_attempt_at": request.next_attempt_at.isoformat() if request.next_attempt_at else None,
        "given_up_at": request.given_up_at.isoformat() if request.given_up_at else None,
    }


def _alert_object(item: OutboxItem) -> dict:
    """A reply that did not go out: held (the relay did not take it within the retry window;
    tried again every hour) or failed (refused for good); `patchbot outbox retry` sends it now."""
    return {
        "id": item.id, "key": item.key, "status": item.status, "attempts": item.attempts,
        "last_error": item.last_error, "recipients": list(item.recipients),
        "created_at": item.created_at.isoformat() if item.created_at else None,
        "next_attempt_at": item.next_attempt_at.isoformat() if item.next_attempt_at and item.status == "held" else None,
    }


def status_object(status: QueueStatus) -> dict:
    """The JSON object `patchbot status --json` prints."""
    return {
        "services": [
            {"claimer": service.claimer, "state": service.state if alive or service.state == "stopped" else "dead",
             "started_at": service.started_at.isoformat(), "beat_at": service.beat_at.isoformat(),
             "sources": list(service.sources)}
            for service, alive in status.services
        ],
        "unfiled_mails": status.unfiled_mails,
        "failed_mails": [
            {"id": mail.id, "message_id": mail.message_id, "stage": mail.stage, "error": mail.error,
             "failed_at": mail.failed_at.isoformat() if mail.failed_at else None, "subject": mail.subject,
             "sender": mail.sender}
            for mail in status.failed_mails
        ],
        "tests": {name: [_request_object(request) for request in requests] for name, requests in
                  (("running", status.running), ("waiting", status.waiting), ("retrying", status.retrying),
                   ("given_up", status.given_up))},
        "outbox": status.outbox,
        "outbox_alerts": [_alert_object(item) for item in status.unsent_replies],
        "recent_errors": [{"at": at.isoformat(), "level": level, "message": message}
                          for at, level, message in status.events],
    }


def status_text(status: QueueStatus) -> str:
    return render("cli/status.txt", status=status_object(status))
