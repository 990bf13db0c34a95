"""Turn a stored test run into the reply a person reads in the thread (a Reply, not yet sent).

Deciding the words happens here, filling them in happens in templates/reply/: the template
gets ready-made strings and lists, never the raw run.

Test names, failure texts and machine details are the patch's or the machine's words, not ours
(issue 11 item 8 and 11): names are one line (`safe_text.one_line`), excerpts are indented, so
that no line at column 0 comes from anywhere but the template, and stripped of the machine's
paths and process ids (`safe_text.without_machine_details`); a suite that could not run says
so in a fixed phrase (its detail is the operator's: `patchbot series show`, `status`). Sizes
are capped so that 3,001 failing tests no longer make a 4.6 MB mail:

- an excerpt: EXCERPT_LINES lines of at most EXCERPT_WIDTH characters, EXCERPT_BYTES in all;
- MAX_EXCERPTS failures are shown with an excerpt, the names of MAX_MORE_NAMES more are listed,
  then only their number ("N more new failures ... see the full log");
- a list of names in one line (fixed, still failing ...): MAX_NAMES_IN_LINE, then "and N more";
- conflicting files: MAX_CONFLICTS; a name or path: NAME_WIDTH characters;
- the whole body: MAX_REPLY_BYTES; over it (only a config with very many suites gets there),
  excerpts are dropped one by one, and as a last resort the body is cut with a note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchbot.config import Config
from patchbot.environments import NEEDS_TRUST
from patchbot.mail.headers import address_of, formatted_address, message_ids_in
from patchbot.render import render
from patchbot.safe_text import CUT_MARK, capped_lines, one_line, without_machine_details
from patchbot.series import sent_in_thread_of
from patchbot.store import SeriesRecord, StoredTestRun, Store
from patchbot.testreports import FAILING

EXCERPT_LINES = 20
EXCERPT_WIDTH = 200
EXCERPT_BYTES = 4 * 1024
MAX_EXCERPTS = 10
MAX_MORE_NAMES = 30
MAX_NAMES_IN_LINE = 10
MAX_CONFLICTS = 20
NAME_WIDTH = 200
MAX_REPLY_BYTES = 64 * 1024
APPLY_DETAIL_LINES = 12
# What a reply says of a suite the machine could not run; the reason itself (a sandbox error
# naming cgroup paths and process ids) is the operator's.
COULD_NOT_RUN = "could not run; the reason is in the operator's log"
# How results.cannot_vouch's reasons start: a suite that ran but cannot vouch for the patch.
CANNOT_JUDGE = "cannot judge: "
# A line that patchbot's command reader would take for a command, however indented: a test that
# prints `patchbot: apply master force` must not have its line in a reply that a maintainer might
# answer without quoting (Outlook). Such lines get brackets: "[patchbot:] apply master force".
_COMMAND_LIKE = re.compile(r"^(\s*)(patchbot\s*:)", re.IGNORECASE | re.MULTILINE)
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
    body = result_body(config, series, run, separate_from=separate_from(store, series))
    return series_reply(store, config, series, request, body)


def result_body(config: Config, series: SeriesRecord, run: StoredTestRun, **extra) -> str:
    """The result reply's text, at most MAX_REPLY_BYTES of it."""
    values = {**result_context(config, series, run), **extra}
    body = _rendered(values)
    while len(body.encode()) > MAX_REPLY_BYTES and values["excerpts"]:
        dropped = values["excerpts"].pop()
        more = values["more_failures"] or {"count": 0, "names": []}
        values["more_failures"] = {"count": more["count"] + 1, "names": [dropped["name"], *more["names"]][:MAX_MORE_NAMES]}
        body = _rendered(values)
    if len(body.encode()) > MAX_REPLY_BYTES:
        body = body.encode()[: MAX_REPLY_BYTES - 200].decode("utf-8", "ignore").rsplit("\n", 1)[0]
        body += "\n" + render("reply/cut-short.txt", limit=MAX_REPLY_BYTES)
    return body


def _rendered(values: dict) -> str:
    return _COMMAND_LIKE.sub(r"\1[\2]", render("reply/series-result.txt", **values))


def separate_from(store: Store, series: SeriesRecord) -> dict | None:
    """Whose series this one was sent into the thread of, when it is another sender's and not a
    version of it: the reply must not read as a result of that series."""
    host = sent_in_thread_of(store, series, tuple(reversed(thread_of(store, series).references)))
    if host is None:
        return None
    person = lambda name, addr: one_line(f"{name} <{addr}>" if name else addr, 200)  # noqa: E731
    return {"sender": person(series.author_name, series.author), "author": person(host.author_name, host.author),
            "title": one_line(host.title, 200)}


def superseded_reply(store: Store, config: Config, series: SeriesRecord, newer: SeriesRecord | None, request: int) -> Reply:
    """In place of the result of a version a newer one replaced before it was tested."""
    body = render("reply/series-superseded.txt", version=series.version,
                  newer=f"v{newer.version} ({one_line(newer.title, NAME_WIDTH)})" if newer else "a newer version")
    return series_reply(store, config, series, request, body)


def series_reply(store: Store, config: Config, series: SeriesRecord, request: int, body: str) -> Reply:
    """A reply in a series' thread; its key allows one per series version and test request."""
    thread = thread_of(store, series)
    to, cc = recipients(config, series)
    return Reply(
        key=f"series-{series.id}/v{series.version}/result/{request}",
        series_id=series.id,
        subject=reply_subject(one_line(thread.subject)),  # a subject's escapes are not re-sent
        in_reply_to=thread.message_id,
        references=(*thread.references, thread.message_id),
        to=to,
        cc=cc,
        body=body,
        series_tag=f"{series.id}/v{series.version}",
    )


def recipients(config: Config, series: SeriesRecord) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """To the list and Cc the author, as configured; To the author when there is no list."""
    author = formatted_address(one_line(series.author_name), series.author)  # never raises on "jörg@..." (RFC 6532)
    if config.mail.list_address is None:
        return (author,), ()
    return (config.mail.list_address,), ((author,) if config.mail.cc_author else ())


def result_context(config: Config, series: SeriesRecord, run: StoredTestRun) -> dict:
    """Every value the result template shows, as ready-made text."""
    summary = run.summary
    ref = summary["base_ref"] if summary["base_ref"] != summary["base"] else summary["base"][:12]
    base = one_line(f"{ref} ({summary['base'][:7]}; {summary['base_reason']})", NAME_WIDTH)
    suites = summary["suites"]
    folders = machine_folders(config)
    excerpts, more_failures = _excerpts(run, summary, folders)
    conflicts = summary["conflicts"]
    return {
        "headline": _headline(series, summary, base),
        "base_note": _base_note(summary),
        "suite_lines": [_suite_line(suite, folders) for suite in suites],
        "left_out": [one_line(f"{item['suite']}: {item['reason']}", NAME_WIDTH) for item in summary["left_out"]],
        "since_previous": _since_previous(series, suites),
        "excerpts": excerpts,
        "more_failures": more_failures,
        "conflicts": [_conflict_line(conflict) for conflict in conflicts[:MAX_CONFLICTS]],
        "more_conflicts": max(0, len(conflicts) - MAX_CONFLICTS),
        "apply_detail": _apply_detail(summary["apply_detail"], folders) if not summary["applied"] else "",
        "log_hint": _log_hint(config, run, suites),
        "reproduce": _reproduce(summary),
        "announced": series.total, "extra_patches": len(series.extra_patches),  # [PATCH 3/2]: series.py
        "version_mismatch": f"v{series.version}" if series.version_mismatches else "",
    }


def _headline(series: SeriesRecord, summary: dict, base: str) -> str:
    who = f"v{series.version} of this series" if series.total and series.total > 1 or series.version > 1 else "This patch"
    if pull := summary.get("pull"):  # pulls.py: fetched and merged, not applied
        who = f"v{series.version} of this pull request" if series.version > 1 else "This pull request"
        if pull["not_tested"] or not summary["applied"]:
            why = one_line(pull["not_tested"], NAME_WIDTH) if pull["not_tested"] else f"it conflicts with {base}"
            return f"{who} was not tested: {why}."
    if not summary["applied"]:
        which = "the series it is based on" if summary["prerequisite_failed"] else f"patch {summary['failed_patch']}/{summary['failed_total']}"
        return f"{who} did not apply on {base}: {which} failed."
    suites = summary["suites"]
    new = sum(len(suite["new_failures"]) for suite in suites)
    old = sum(len(suite["preexisting_failures"]) for suite in suites)
    timed_out = [suite["name"] for suite in suites if suite["status"] == "timeout"]
    infra = [suite["name"] for suite in suites if suite["status"] == "infra-error"]
    waiting_for_trust = [suite["name"] for suite in suites if suite["status"] == "skipped" and NEEDS_TRUST in suite["detail"]]
    start = f"{who} {'merged' if pull else 'applied'} cleanly on {base} and was tested"
    if not suites:
        return f"{start}, but it touches no code that a suite covers."
    parts = []
    if new:
        parts.append(f"{_count(new, 'new failure')}")
    if timed_out:
        parts.append(f"{', '.join(timed_out)} hit the time limit")
    if infra:
        parts.append(f"{', '.join(infra)} could not be run (a problem of the test machine, not of the patch)")
    if waiting_for_trust:  # never "every suite passed": they did not run (patchbot.environments)
        parts.append(f"{', '.join(waiting_for_trust)} not run: this series {NEEDS_TRUST}")
    if not parts:
        if old:
            verb = "fails" if old == 1 else "fail"
            return (f"{start}: no new failures; {_count(old, 'test')} that already {verb} on "
                    f"{one_line(summary['base_ref'], NAME_WIDTH)} {verb} here too.")
        return f"{start}: every suite passed."
    return f"{start}: " + "; ".join(parts) + "."


def _base_note(summary: dict) -> str:
    behind = summary["base_behind_tip"]
    if not behind:
        return ""
    branch = one_line(summary["base_branch"], NAME_WIDTH)
    return f"Note: this base is {_count(behind, 'commit')} behind {branch}; \"patchbot: test {branch}\" tests on its tip."


def machine_folders(config: Config) -> tuple[str, ...]:
    """The configured folders of this machine (work, state, config) a reply must not name."""
    paths = (config.work_dir, config.db.parent if config.db else None, config.source.parent if config.source else None)
    return tuple(str(path) for path in paths if path is not None and str(path) != "/")


def _suite_line(suite: dict, folders: tuple[str, ...]) -> str:
    status = {"pass": "PASS", "fail": "FAIL", "timeout": "TIMEOUT", "infra-error": "ERROR", "skipped": "SKIP"}[suite["status"]]
    total = suite["passed"] + suite["failed"]
    if suite["status"] == "timeout":
        what = _machine_words(suite["detail"], folders) or "killed at its time limit"
    elif suite["status"] == "infra-error" and CANNOT_JUDGE in suite["detail"]:
        # Our own words (results.cannot_vouch), counts only: no path of the machine in them.
        what = suite["detail"][suite["detail"].index(CANNOT_JUDGE):]
    elif suite["status"] == "infra-error":
        what = COULD_NOT_RUN
    elif suite["status"] == "skipped" and NEEDS_TRUST in suite["detail"]:
        what = "not run: changes dependencies"
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
        parts.append("fixes " + _names(fixed))
    if still:
        parts.append("still failing " + _names(still))
    if new:
        parts.append("new failure " + _names(new))
    return f"Compared with the previous version: {'; '.join(parts)}."


def _names(tests: list[str]) -> str:
    shown = ", ".join(_short(test) for test in tests[:MAX_NAMES_IN_LINE])
    return shown if len(tests) <= MAX_NAMES_IN_LINE else f"{shown} and {len(tests) - MAX_NAMES_IN_LINE} more"


def _excerpts(run: StoredTestRun, summary: dict, folders: tuple[str, ...]) -> tuple[list[dict], dict | None]:
    """The first MAX_EXCERPTS new failures with an excerpt each, and what is left: its number and
    the first MAX_MORE_NAMES names (None when nothing is left)."""
    results = {result.suite: result for result in run.tip}
    base_ref = one_line(summary["base_ref"], NAME_WIDTH)
    excerpts, left = [], []
    for suite in summary["suites"]:
        result = results.get(suite["name"])
        cases = None
        for test in suite["new_failures"]:
            name = f"{suite['name']}: {_short(test)}"
            if len(excerpts) == MAX_EXCERPTS:
                left.append(name)
                continue
            if cases is None:
                cases = {case.name: case for case in result.report.cases} if result and result.report else {}
            case = cases.get(test)
            if case is not None and case.outcome in FAILING:
                text = failure_excerpt(case.detail or case.message)
            else:
                text = suite["detail"] or "the suite failed without a per-test report; see the full log"
            on_base = suite.get("new_failures_on_base", {}).get(test, "unknown")
            note = {"passed": f"passes on {base_ref}", "absent": f"not on {base_ref}",
                    "skipped": f"skipped on {base_ref}"}.get(on_base, f"{base_ref} could not be compared")
            excerpts.append({"name": name, "title": f"{name} (new; {note})", "text": _indent(without_machine_details(text, folders))})
    more = {"count": len(left), "names": left[:MAX_MORE_NAMES]} if left else None
    return excerpts, more


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


def _apply_detail(detail: str, folders: tuple[str, ...]) -> str:
    return _indent(without_machine_details(_git_words(detail), folders), limit=APPLY_DETAIL_LINES)


def _conflict_line(conflict: dict) -> str:
    return one_line(conflict["path"], NAME_WIDTH) + (f", the hunk at line {conflict['line']}" if conflict["line"] else "")


def _log_hint(config: Config, run: StoredTestRun, suites: list[dict]) -> str:
    """Where the whole output is; empty when no suite ran (a series that did not apply)."""
    if not suites:
        return ""
    hint = f"patchbot log {run.id}"
    if config.reply.log_url:
        urls = dict.fromkeys(config.reply.log_url.format(run=run.id, suite=suite["name"])
                             for suite in suites if suite["status"] != "pass")
        return f"{hint}; " + ", ".join(urls) if urls else hint
    return hint


def _reproduce(summary: dict) -> list[str]:
    pull = summary.get("pull")
    if pull and pull["not_tested"]:
        return []
    apply = one_line(f"git pull --no-ff {pull['url']} {pull['ref'] or 'HEAD'}", NAME_WIDTH) if pull else "git am -3 < the-series.mbox"
    if not summary["applied"]:
        return [f"git checkout {summary['base'][:12]}", apply]
    failing = [suite for suite in summary["suites"] if suite["status"] != "pass"]
    if not failing:
        return []
    return [f"git checkout {summary['base'][:12]}", apply,
            *(one_line(suite["command"]) for suite in failing)]


def _short(test: str) -> str:
    """A test's name without its module, as one line of at most NAME_WIDTH characters."""
    return one_line(test.rsplit("::", 1)[-1] if "::" in test else test, NAME_WIDTH)


def _machine_words(detail: str, folders: tuple[str, ...]) -> str:
    """A detail from the machine (a time limit, an exit code), one line, without its paths and pids."""
    return one_line(without_machine_details(detail, folders), EXCERPT_WIDTH)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _indent(text: str, limit: int = EXCERPT_LINES) -> str:
    """Text as excerpt lines: indented, so that none can pose as a line of ours (a command, a
    signature, a verdict), made printable, at most `limit` lines (its last) and EXCERPT_BYTES."""
    if not text.strip():
        return ""
    lines = text.split("\n")
    if len(lines) > limit:
        lines = [CUT_MARK, *lines[-limit:]]
    return "\n".join("    " + line for line in capped_lines("\n".join(lines), limit + 1, EXCERPT_WIDTH, EXCERPT_BYTES))


def sender_address(config: Config) -> str:
    """patchbot's own address, for loop checks."""
    found = address_of(config.mail.sender)
    return found.addr if found else ""
