"""Present stored series and mails on the command line, as JSON objects or as text.

Subjects, names and test output were written by mail senders and by tests: in text for a
terminal, one-line values go through `safe_text.one_line` and logs through `safe_text.printable`,
so that no escape sequence (OSC 52 writing the clipboard, clearing the screen) reaches the
operator's terminal and no value makes lines of its own. JSON is escaped by the encoder.
"""

from __future__ import annotations

from dataclasses import asdict

from patchbot.series.intake import IngestSummary
from patchbot.text.render import render
from patchbot.text.safe_text import one_line, printable
from patchbot.store.records import MailRecord, SeriesRecord


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
        "based_on": list(series.based_on),
        "kind": series.kind,
        "pull": asdict(series.pull) if series.pull else None,  # url, ref, and the tip and base its mail announced
        "extra_patches": list(series.extra_patches),
        "version_mismatches": [{"number": slot.number, "version": slot.version} for slot in series.version_mismatches],
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
            "author": one_line(series.author),
            "title": one_line(series.title),
        }
        for series in all_series
    ]
    return render("cli/series-list.txt", rows=rows)


def series_text(series: SeriesRecord) -> str:
    patches = [
        {"number": f"{slot.number}/{series.total or '?'}", "subject": one_line(slot.subject),
         "message_id": one_line(slot.message_id), "note": " (from the previous version)" if slot.inherited else ""}
        for slot in series.patches
    ]
    missing = [] if series.total is None else [n for n in range(1, series.total + 1) if n not in series.received]
    return render(
        "cli/series-show.txt",
        id=series.id, title=one_line(series.title), version=series.version,
        author=one_line(f"{series.author_name} <{series.author}>"),
        date=series.date.isoformat(), state=series_state(series), received=received_text(series),
        missing=", ".join(str(n) for n in missing), cover=one_line(series.cover_message_id or "none"),
        supersedes=series.supersedes_id, patches=patches,
    )


def mail_text(mail: MailRecord) -> str:
    shown = {key: one_line(value) if isinstance(value, str) else value for key, value in mail_object(mail).items()}
    shown["files"] = [{**change, "path": one_line(change["path"]), "old_path": one_line(change["old_path"] or "")}
                      for change in shown["files"]]
    shown["trailers"] = [{key: one_line(value) for key, value in trailer.items()} for trailer in shown["trailers"]]
    return render("cli/message-show.txt", mail=shown)


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
    """A stored or fresh test run (the `patchbot test --json` object) as text; test names from the
    report are one line each."""
    suites = [{**suite, **{key: [one_line(test) for test in suite[key]] for key in ("new_failures", "preexisting_failures")},
               "detail": one_line(suite["detail"])} for suite in summary["suites"]]
    conflicts = [{**conflict, "path": one_line(conflict["path"])} for conflict in summary["conflicts"]]
    return render("cli/test-run.txt", run={**summary, "suites": suites, "conflicts": conflicts,
                                           "failed_subject": one_line(summary.get("failed_subject") or "")})


def run_summary_text(counts: dict[str, int]) -> str:
    return render("cli/run-summary.txt", counts=sorted(counts.items()))


def log_text(run_id: int, suite: dict, text: str) -> str:
    return render("cli/suite-log.txt", run_id=run_id, suite_name=one_line(suite["name"]),
                  command=one_line(suite["command"]), status=suite["status"], text=printable(text))
