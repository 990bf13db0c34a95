"""What the store returns: plain frozen records, and how rows become them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from patchbot.mail.diff import FileChange
from patchbot.mail.trailers import Trailer
from patchbot.series.pulls import PullRequest
from patchbot.testing.verdict import SuiteResult
from patchbot.testing.suite_health import Breakage, BreakageKind
from patchbot.testing.reports import Outcome, TestCase, TestReport


@dataclass(frozen=True)
class NewMail:
    """A stored mail not yet parsed and filed."""

    id: int
    message_id: str
    raw: bytes
    origin: str
    received_at: datetime


@dataclass(frozen=True)
class FailedMail:
    """A mail set aside because its handling raised."""

    id: int
    message_id: str
    stage: str  # the pipeline stage that raised
    error: str  # exception type and message
    failed_at: datetime | None
    subject: str | None  # None: it was never filed
    sender: str | None


@dataclass(frozen=True)
class MailFacts:
    """What parsing found out about a mail, as the store keeps it."""

    kind: str
    kind_rule: str
    subject: str
    title: str
    sender: str
    sender_name: str
    date: datetime | None
    version: int | None
    counter: int | None
    total: int | None
    in_reply_to: str | None
    has_diff: bool
    files: tuple[FileChange, ...]
    trailers: tuple[Trailer, ...]
    pull_url: str | None
    message_id: str = ""
    auto_submitted: str | None = None
    bounce: bool = False


@dataclass(frozen=True)
class MailRecord:
    id: int
    message_id: str
    synthetic_id: bool
    origin: str
    received_at: datetime
    status: str
    reason: str | None
    facts: MailFacts | None
    series_id: int | None


@dataclass(frozen=True)
class PatchSlot:
    number: int
    mail_id: int
    message_id: str
    subject: str
    title: str
    inherited: bool
    version: int | None = None  # what the patch's own subject says (the series' version may differ)


@dataclass(frozen=True)
class SeriesRecord:
    id: int
    title: str
    normalised_title: str
    author: str
    author_name: str
    version: int
    total: int | None
    cover_mail_id: int | None
    cover_message_id: str | None
    date: datetime
    supersedes_id: int | None
    obsolete: bool
    patches: tuple[PatchSlot, ...]
    ignored: bool = False  # a maintainer said "patchbot: ignore": not tested, pending tests dropped
    based_on: tuple[str, ...] = ()  # Based-on:/Depends-on: values believed (series_hints), newest first
    kind: str = "patch"  # or "pull": a pull request, tested by fetching `pull` (pulls.py)
    pull: PullRequest | None = None

    @property
    def received(self) -> tuple[int, ...]:
        return tuple(slot.number for slot in self.patches)

    @property
    def complete(self) -> bool:
        """Every patch 1..total is here (patches beyond the total do not make it incomplete)."""
        return self.total is not None and set(range(1, self.total + 1)) <= set(self.received)

    @property
    def extra_patches(self) -> tuple[int, ...]:
        """Numbers beyond the announced total (`[PATCH 3/2]` sent after a 0/2 cover letter)."""
        return tuple(number for number in self.received if self.total is not None and number > self.total)

    @property
    def version_mismatches(self) -> tuple[PatchSlot, ...]:
        """Own patches whose subject names another version than the series (the cover's wins)."""
        return tuple(slot for slot in self.patches
                     if not slot.inherited and slot.version is not None and slot.version != self.version)

    def slot(self, number: int) -> PatchSlot | None:
        return next((slot for slot in self.patches if slot.number == number), None)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class TestRequest:
    __test__ = False

    id: int
    series_id: int
    number: int
    base_ref: str | None
    reason: str
    suite: str | None = None  # only this suite (a retest of one suite)
    claimed_by: str | None = None  # the worker running it, host:pid:start
    claimed_until: datetime | None = None
    started_at: datetime | None = None
    attempts: int = 0  # runs that could not start or could not judge (the machine's failures)
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    given_up_at: datetime | None = None  # infrastructure retries spent: answered "could not be tested"


_REQUEST_COLUMNS = ("id, series_id, number, base_ref, reason, suite, claimed_by, claimed_until, started_at, attempts,"
                    " last_error, next_attempt_at, given_up_at")


def _test_request(row: tuple) -> TestRequest:
    return TestRequest(*row[:7], _moment(row[7]), _moment(row[8]), row[9], row[10], _moment(row[11]), _moment(row[12]))


@dataclass(frozen=True)
class ServiceRecord:
    """A `patchbot serve` process as it last noted itself."""

    claimer: str
    started_at: datetime
    beat_at: datetime
    state: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class OutboxItem:
    id: int
    key: str
    series_id: int | None
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    status: str  # pending | held (past the retry window) | sent | failed (refused for good)
    attempts: int
    last_error: str | None
    created_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class StoredTestRun:
    id: int
    series_id: int
    started_at: datetime
    finished_at: datetime
    summary: dict  # the JSON object `patchbot test --json` printed
    tip: tuple[SuiteResult, ...]


_OUTBOX_COLUMNS = ("id, key, series_id, message_id, sender, recipients, data, status, attempts, last_error,"
                   " created_at, next_attempt_at")


def _outbox_item(row: tuple) -> OutboxItem:
    return OutboxItem(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5])), row[6], row[7], row[8], row[9],
                      _moment(row[10]), _moment(row[11]))


def _result_json(result: SuiteResult) -> dict:
    cases = None
    if result.report is not None:
        cases = [[case.name, case.outcome.value, case.message, case.detail] for case in result.report.cases]
    broken = [result.broken.kind.value, result.broken.evidence] if result.broken else None
    return {"suite": result.suite, "outcome": result.outcome.value, "cases": cases,
            "duration_s": result.duration_s, "detail": result.detail, "exit_code": result.exit_code, "broken": broken}


def _result_from(data: dict) -> SuiteResult:
    report = None
    if data["cases"] is not None:
        report = TestReport(tuple(TestCase(name, Outcome(outcome), message, detail)
                                  for name, outcome, message, detail in data["cases"]))
    broken = Breakage(BreakageKind(data["broken"][0]), data["broken"][1]) if data.get("broken") else None
    return SuiteResult(data["suite"], Outcome(data["outcome"]), report, data["duration_s"], data["detail"],
                       data.get("exit_code"), broken)  # results kept before issue 12 item 4 have neither


_MAIL_COLUMNS = (
    "id, message_id, synthetic_id, origin, received_at, status, reason, kind, kind_rule, subject,"
    " title, sender, sender_name, date, version, counter, total, in_reply_to, details, series_id"
)
_SERIES_COLUMNS = (
    "s.id, s.title, s.normalised_title, s.author, s.author_name, s.version, s.total, s.cover_mail_id,"
    " (SELECT message_id FROM mails WHERE id = s.cover_mail_id), s.date, s.supersedes_id, s.obsolete, s.ignored,"
    " s.kind, s.pull_url, s.pull_ref, s.pull_tip, s.pull_base"
)


def _mail_record(row: tuple) -> MailRecord:
    facts = None
    if row[7] is not None:
        details = json.loads(row[18] or "{}")
        facts = MailFacts(
            kind=row[7], kind_rule=row[8], subject=row[9], title=row[10], sender=row[11],
            sender_name=row[12], date=_moment(row[13]), version=row[14], counter=row[15],
            total=row[16], in_reply_to=row[17], has_diff=details.get("has_diff", False),
            files=tuple(FileChange(**change) for change in details.get("files", [])),
            trailers=tuple(Trailer(name, value) for name, value in details.get("trailers", [])),
            pull_url=details.get("pull_url"), message_id=row[1],
            auto_submitted=details.get("auto_submitted"), bounce=details.get("bounce", False),
        )
    return MailRecord(
        id=row[0], message_id=row[1], synthetic_id=bool(row[2]), origin=row[3],
        received_at=_moment(row[4]), status=row[5], reason=row[6], facts=facts, series_id=row[19],
    )
