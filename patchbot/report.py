"""Turn a stored test run into the reply a person reads in the thread (a Reply, not yet sent).

Deciding the words happens here, filling them in happens in templates/reply/: the template
gets ready-made strings and lists, never the raw run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formataddr

from patchbot.config import Config
from patchbot.mail.headers import address_of, message_ids_in
from patchbot.render import render
from patchbot.store import SeriesRecord, StoredTestRun, Store
from patchbot.testreports import FAILING

EXCERPT_LINES = 20
EXCERPT_WIDTH = 200
_REPLY_PREFIX = re.compile(r"^\s*re:", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    """One mail patchbot will send: its key makes it unique, so it is never made twice."""

    key: str  # e.g. "series-5/v2/result/1"
    series_id: int
    subject: str
    in_reply_to: str | None
    references: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    body: str
    series_tag: str  # X-Patchbot-Series: "<id>/v<version>"


@dataclass(frozen=True)
class Thread:
    """Where a series' replies go: under its cover letter, or its single (first) patch."""

    subject: str
    message_id: str
    references: tuple[str, ...]


def thread_of(store: Store, series: SeriesRecord) -> Thread:
    mail_id = series.cover_mail_id or series.patches[0].mail_id
    record = store.mail_by_id(mail_id)
    raw = store.raw_mail(mail_id)
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
    references = message_ids_in(next(iter(re.findall(r"(?im)^references:(.*)$", unfolded)), ""))
    if not references and record.facts and record.facts.in_reply_to:
        references = (record.facts.in_reply_to,)  # RFC 5322 3.6.4: the parent's In-Reply-To stands in
    subject = record.facts.subject if record.facts else series.title
    return Thread(subject, record.message_id, references)


def reply_subject(original: str) -> str:
    return original if _REPLY_PREFIX.match(original) else f"Re: {original}"


def result_reply(store: Store, config: Config, series: SeriesRecord, run: StoredTestRun, request: int) -> Reply:
    """The one reply for a test run of a series version (`request` counts retests)."""
    return series_reply(store, config, series, request, render("reply/series-result.txt", **result_context(config, series, run)))


def superseded_reply(store: Store, config: Config, series: SeriesRecord, newer: SeriesRecord | None, request: int) -> Reply:
    """In place of the result of a version a newer one replaced before it was tested."""
    body = render("reply/series-superseded.txt", version=series.version,
                  newer=f"v{newer.version} ({newer.title})" if newer else "a newer version")
    return series_reply(store, config, series, request, body)


def series_reply(store: Store, config: Config, series: SeriesRecord, request: int, body: str) -> Reply:
    """A reply in a series' thread; its key allows one per series version and test request."""
    thread = thread_of(store, series)
    to, cc = recipients(config, series)
    return Reply(
        key=f"series-{series.id}/v{series.version}/result/{request}",
        series_id=series.id,
        subject=reply_subject(thread.subject),
        in_reply_to=thread.message_id,
        references=(*thread.references, thread.message_id),
        to=to,
        cc=cc,
        body=body,
        series_tag=f"{series.id}/v{series.version}",
    )


def recipients(config: Config, series: SeriesRecord) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """To the list and Cc the author, as configured; To the author when there is no list."""
    author = formataddr((" ".join(series.author_name.split()), series.author))  # quoted where the name needs it
    if config.mail.list_address is None:
        return (author,), ()
    return (config.mail.list_address,), ((author,) if config.mail.cc_author else ())


def result_context(config: Config, series: SeriesRecord, run: StoredTestRun) -> dict:
    """Every value the result template shows, as ready-made text."""
    summary = run.summary
    ref = summary["base_ref"] if summary["base_ref"] != summary["base"] else summary["base"][:12]
    base = f"{ref} ({summary['base'][:7]}; {summary['base_reason']})"
    suites = summary["suites"]
    return {
        "headline": _headline(series, summary, base),
        "base_note": _base_note(summary),
        "suite_lines": [_suite_line(suite) for suite in suites],
        "left_out": [f"{item['suite']}: {item['reason']}" for item in summary["left_out"]],
        "since_previous": _since_previous(series, suites),
        "excerpts": _excerpts(run, summary),
        "conflicts": [_conflict_line(conflict) for conflict in summary["conflicts"]],
        "apply_detail": _indent(_git_words(summary["apply_detail"]), limit=12) if not summary["applied"] else "",
        "log_hint": _log_hint(config, run, suites),
        "reproduce": _reproduce(summary),
    }


def _headline(series: SeriesRecord, summary: dict, base: str) -> str:
    who = f"v{series.version} of this series" if series.total and series.total > 1 or series.version > 1 else "This patch"
    if not summary["applied"]:
        which = "the series it is based on" if summary["prerequisite_failed"] else f"patch {summary['failed_patch']}/{summary['failed_total']}"
        return f"{who} did not apply on {base}: {which} failed."
    suites = summary["suites"]
    new = sum(len(suite["new_failures"]) for suite in suites)
    old = sum(len(suite["preexisting_failures"]) for suite in suites)
    timed_out = [suite["name"] for suite in suites if suite["status"] == "timeout"]
    infra = [suite["name"] for suite in suites if suite["status"] == "infra-error"]
    start = f"{who} applied cleanly on {base} and was tested"
    if not suites:
        return f"{start}, but it touches no code that a suite covers."
    parts = []
    if new:
        parts.append(f"{_count(new, 'new failure')}")
    if timed_out:
        parts.append(f"{', '.join(timed_out)} hit the time limit")
    if infra:
        parts.append(f"{', '.join(infra)} could not be run (a problem of the test machine, not of the patch)")
    if not parts:
        if old:
            verb = "fails" if old == 1 else "fail"
            return f"{start}: no new failures; {_count(old, 'test')} that already {verb} on {summary['base_ref']} {verb} here too."
        return f"{start}: every suite passed."
    return f"{start}: " + "; ".join(parts) + "."


def _base_note(summary: dict) -> str:
    behind = summary["base_behind_tip"]
    if not behind:
        return ""
    return (f"Note: this base is {_count(behind, 'commit')} behind {summary['base_branch']}; "
            f"\"patchbot: test {summary['base_branch']}\" tests on its tip.")


def _suite_line(suite: dict) -> str:
    status = {"pass": "PASS", "fail": "FAIL", "timeout": "TIMEOUT", "infra-error": "ERROR", "skipped": "SKIP"}[suite["status"]]
    total = suite["passed"] + suite["failed"]
    if suite["status"] == "timeout":
        what = suite["detail"] or "killed at its time limit"
    elif suite["status"] == "infra-error":
        what = f"could not run: {suite['detail']}"
    elif suite["new_failures"]:
        what = f"{_count(len(suite['new_failures']), 'new failure')} of {total}"
    else:
        what = f"{suite['passed']} passed"
        if suite["preexisting_failures"]:
            what += f", {len(suite['preexisting_failures'])} failing before too"
    if suite["skipped"]:
        what += f" ({suite['skipped']} skipped)"
    return f"{suite['name']:<10} {status:<7} {what:<44} {suite['duration_s']:6.1f} s"


def _since_previous(series: SeriesRecord, suites: list[dict]) -> str:
    if series.supersedes_id is None:
        return ""
    fixed = [test for suite in suites for test in suite["fixed_since_previous"]]
    still = [test for suite in suites for test in suite["still_failing_since_previous"]]
    new = [test for suite in suites for test in suite["new_since_previous"]]
    if not (fixed or still or new):
        return ""
    parts = []
    if fixed:
        parts.append("fixes " + ", ".join(_short(test) for test in fixed))
    if still:
        parts.append("still failing " + ", ".join(_short(test) for test in still))
    if new:
        parts.append("new failure " + ", ".join(_short(test) for test in new))
    return f"Compared with the previous version: {'; '.join(parts)}."


def _excerpts(run: StoredTestRun, summary: dict) -> list[dict]:
    results = {result.suite: result for result in run.tip}
    excerpts = []
    for suite in summary["suites"]:
        result = results.get(suite["name"])
        cases = {case.name: case for case in result.report.cases} if result and result.report else {}
        for test in suite["new_failures"]:
            case = cases.get(test)
            if case is not None and case.outcome in FAILING:
                text = failure_excerpt(case.detail or case.message)
            else:
                text = suite["detail"] or "the suite failed without a per-test report; see the full log"
            on_base = suite.get("new_failures_on_base", {}).get(test, "unknown")
            note = {"passed": f"passes on {summary['base_ref']}", "absent": f"not on {summary['base_ref']}",
                    "skipped": f"skipped on {summary['base_ref']}"}.get(on_base, f"{summary['base_ref']} could not be compared")
            excerpts.append({"title": f"{suite['name']}: {_short(test)} (new; {note})", "text": _indent(text)})
    return excerpts


def failure_excerpt(detail: str) -> str:
    """The lines that say why a test failed: pytest's `>`/`E` lines where present, else the end."""
    lines = [line[:EXCERPT_WIDTH] for line in detail.strip("\n").splitlines() if line.strip()]
    marked = [index for index, line in enumerate(lines) if line.startswith(("E ", ">"))]
    if not marked:
        return "\n".join(lines[-EXCERPT_LINES:])
    start, end = marked[0], min(len(lines), marked[-1] + 2)
    lines = lines[start:end]
    if len(lines) > EXCERPT_LINES:
        # A long assertion diff: its start (the assertion) and where it failed, not its middle.
        lines = [*lines[: EXCERPT_LINES - 2], "[...]", lines[-1]]
    return "\n".join(lines)


def _git_words(detail: str) -> str:
    """What git said about the failing hunks, without its advice on resolving by hand."""
    lines = detail.splitlines()
    start = next((index for index, line in enumerate(lines) if line.startswith("Checking patch")), 0)
    return "\n".join(line for line in lines[start:] if line.startswith(("error:", "Checking", "    ", " ")) or
                     not line.startswith(("If you prefer", "To restore", "When you have", "Patch failed at", "hint:")))


def _conflict_line(conflict: dict) -> str:
    return f"{conflict['path']}" + (f", the hunk at line {conflict['line']}" if conflict["line"] else "")


def _log_hint(config: Config, run: StoredTestRun, suites: list[dict]) -> str:
    """Where the whole output is; empty when no suite ran (a series that did not apply)."""
    if not suites:
        return ""
    hint = f"patchbot log {run.id}"
    if config.mail.log_url:
        urls = dict.fromkeys(config.mail.log_url.format(run=run.id, suite=suite["name"])
                             for suite in suites if suite["status"] != "pass")
        return f"{hint}; " + ", ".join(urls) if urls else hint
    return hint


def _reproduce(summary: dict) -> list[str]:
    if not summary["applied"]:
        return [f"git checkout {summary['base'][:12]}", "git am -3 < the-series.mbox"]
    failing = [suite for suite in summary["suites"] if suite["status"] != "pass"]
    if not failing:
        return []
    return [f"git checkout {summary['base'][:12]}", "git am -3 < the-series.mbox",
            *(suite["command"] for suite in failing)]


def _short(test: str) -> str:
    return test.rsplit("::", 1)[-1] if "::" in test else test


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _indent(text: str, limit: int = EXCERPT_LINES) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-limit:])


def sender_address(config: Config) -> str:
    """patchbot's own address, for loop checks."""
    found = address_of(config.mail.sender)
    return found.addr if found else ""
