"""Present stored series and mails on the command line, as JSON objects or as text."""

from __future__ import annotations

from dataclasses import asdict

from patchbot.intake import IngestSummary
from patchbot.render import render
from patchbot.store import MailRecord, SeriesRecord


def series_object(series: SeriesRecord) -> dict:
    return {
        "id": series.id,
        "title": series.title,
        "version": series.version,
        "total": series.total,
        "received": list(series.received),
        "complete": series.complete,
        "cover": series.cover_message_id,
        "author": series.author,
        "author_name": series.author_name,
        "date": series.date.isoformat(),
        "obsolete": series.obsolete,
        "supersedes": series.supersedes_id,
        "patches": [
            {"number": slot.number, "message_id": slot.message_id, "subject": slot.subject, "inherited": slot.inherited}
            for slot in series.patches
        ],
    }


def mail_object(mail: MailRecord) -> dict:
    facts = mail.facts
    return {
        "message_id": mail.message_id,
        "synthetic_id": mail.synthetic_id,
        "status": mail.status,
        "reason": mail.reason,
        "kind": facts.kind if facts else None,
        "kind_rule": facts.kind_rule if facts else None,
        "subject": facts.subject if facts else None,
        "title": facts.title if facts else None,
        "from": facts.sender if facts else None,
        "from_name": facts.sender_name if facts else None,
        "date": facts.date.isoformat() if facts and facts.date else None,
        "version": facts.version if facts else None,
        "counter": facts.counter if facts else None,
        "total": facts.total if facts else None,
        "in_reply_to": facts.in_reply_to if facts else None,
        "has_diff": facts.has_diff if facts else False,
        "files": [asdict(change) for change in facts.files] if facts else [],
        "pull_url": facts.pull_url if facts else None,
        "trailers": [{"name": t.name, "value": t.value} for t in facts.trailers] if facts else [],
        "series": mail.series_id,
        "origin": mail.origin,
        "received_at": mail.received_at.isoformat(),
    }


def series_state(series: SeriesRecord) -> str:
    if series.obsolete:
        return "obsolete"
    return "complete" if series.complete else "incomplete"


def received_text(series: SeriesRecord) -> str:
    total = series.total if series.total is not None else "?"
    return f"{len(series.received)}/{total}"


def series_list_text(all_series: list[SeriesRecord]) -> str:
    rows = [
        {
            "id": series.id,
            "version": f"v{series.version}",
            "received": received_text(series),
            "state": series_state(series),
            "author": series.author,
            "title": series.title,
        }
        for series in all_series
    ]
    return render("cli/series-list.txt", rows=rows)


def series_text(series: SeriesRecord) -> str:
    patches = [
        {"number": f"{slot.number}/{series.total or '?'}", "subject": slot.subject,
         "message_id": slot.message_id, "note": " (from the previous version)" if slot.inherited else ""}
        for slot in series.patches
    ]
    missing = [] if series.total is None else [n for n in range(1, series.total + 1) if n not in series.received]
    return render(
        "cli/series-show.txt",
        id=series.id, title=series.title, version=series.version, author=f"{series.author_name} <{series.author}>",
        date=series.date.isoformat(), state=series_state(series), received=received_text(series),
        missing=", ".join(str(n) for n in missing), cover=series.cover_message_id or "none",
        supersedes=series.supersedes_id, patches=patches,
    )


def mail_text(mail: MailRecord) -> str:
    return render("cli/message-show.txt", mail=mail_object(mail))


def ingest_summary_text(summary: IngestSummary) -> str:
    kinds = summary.kinds
    return render(
        "cli/ingest-summary.txt",
        total=summary.total, new=summary.new, known=summary.known,
        patches=kinds["patch"], covers=kinds["cover"], replies=kinds["reply"],
        pulls=kinds["pull"], other=kinds["other"],
        rejected=sum(summary.rejected.values()), reasons=sorted(summary.rejected.items()),
        failed=summary.failed, unreadable=summary.unreadable,
    )


def test_run_text(summary: dict) -> str:
    """A stored or fresh test run (the `patchbot test --json` object) as text."""
    return render("cli/test-run.txt", run=summary)


def run_summary_text(counts: dict[str, int]) -> str:
    return render("cli/run-summary.txt", counts=sorted(counts.items()))


def log_text(run_id: int, suite: dict, text: str) -> str:
    return render("cli/suite-log.txt", run_id=run_id, suite_name=suite["name"], command=suite["command"],
                  status=suite["status"], text=text)
