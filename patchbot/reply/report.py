"""Turn a stored test run into the reply a person reads in the thread (a Reply, not yet sent).

Why this is long: the words of a reply are one decision under one set of caps (the limits
below bound every part against every other, and MAX_REPLY_BYTES trades them off at the end); the
reproduce block (_reproduce and its helpers, ~100 lines) is the part that could leave, once
LINE_WIDTH, NAME_WIDTH and `wrapped` live below both (it uses them, and this module uses it).

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

Lines are at most LINE_WIDTH characters (issue 13: list readers read 80 columns, and a summary
line ran to 113): our sentences wrap with the lines after the first indented (so that every
line at column 0 is one the template starts), excerpt lines wrap at a space, and a line longer
than that is a single token (a URL, a long test name) or a line of a configured command, which
wrapping would change.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass

from patchbot.config.records import Config
from patchbot.testing.environments import NEEDS_TRUST
from patchbot.mail.headers import address_of, formatted_address, message_ids_in
from patchbot.text.render import render
from patchbot.text.safe_text import CUT_MARK, capped_lines, one_line, printable, without_machine_details
from patchbot.series.grouping import sent_in_thread_of
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord, StoredTestRun
from patchbot.testing.reports import FAILING, display_name, failure_excerpt

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
LINE_WIDTH = 76
EXCERPT_INDENT = "    "
# What a reply says of a suite the machine could not run; the reason itself (a sandbox error
# naming cgroup paths and process ids) is the operator's.
COULD_NOT_RUN = "could not run; the operator's log says why"
# A failure whose output holds nothing but the test's source (sharness without -v echoes it).
NO_OUTPUT = "(the test printed nothing but its own source; the full log has the rest)"
# How results.cannot_vouch's reasons start: a suite that ran but cannot vouch for the patch.
CANNOT_JUDGE = "cannot judge: "
# The verdicts a headline ends with, kept on one line when it wraps ("every suite\n  passed" read
# badly), glued for textwrap by a character that no text of ours holds.
_VERDICT = re.compile(r"every suite passed|no new failures|\d+ new failures?")
_GLUE = "\x00"
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
    # Names and the title are the senders' words: each on lines of its own, indented.
    return {"sender": wrapped(person(series.author_name, series.author), "  ", "    "),
            "host": wrapped(f'"{one_line(host.title, 200)}" from {person(host.author_name, host.author)}', "  ", "    ")}


def superseded_reply(store: Store, config: Config, series: SeriesRecord, newer: SeriesRecord | None, request: int) -> Reply:
    """In place of the result of a version a newer one replaced before it was tested."""
    return series_reply(store, config, series, request, superseded_body(series, newer))


def superseded_body(series: SeriesRecord, newer: SeriesRecord | None) -> str:
    """The note's text; the newer version's title (its sender's words) on a line of its own, indented."""
    return render("reply/series-superseded.txt", version=series.version,
                  newer=f"v{newer.version}" if newer else "a newer version",
                  newer_title=wrapped(one_line(f"v{newer.version}: {newer.title}", NAME_WIDTH), "  ", "    ") if newer else "")


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
    headline = _headline(series, summary, one_line(ref, NAME_WIDTH))
    return {
        "headline": headline,  # one line: `patchbot: status` shows it after a label
        "headline_lines": wrapped(_VERDICT.sub(lambda found: found.group().replace(" ", _GLUE), headline)).replace(_GLUE, " "),
        "base_line": _base_line(summary),
        "base_note": wrapped(_base_note(summary)),
        "suite_lines": [_suite_line(suite, folders) for suite in suites],
        "left_out": [wrapped(one_line(f"(not run: {item['suite']}: {item['reason']})", NAME_WIDTH), "  ", "    ")
                     for item in summary["left_out"]],
        "since_previous": _since_previous(series, suites),
        "excerpts": excerpts,
        "more_failures": more_failures,
        "conflicts": [_conflict_line(conflict) for conflict in conflicts[:MAX_CONFLICTS]],
        "more_conflicts": max(0, len(conflicts) - MAX_CONFLICTS),
        "apply_detail": _apply_detail(summary["apply_detail"], folders) if not summary["applied"] else "",
        "log_hint": _log_hint(config, run, suites),
        "log_urls": _log_urls(config, run, suites),
        "reproduce": _reproduce(config, series, summary),
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
    infra = [suite["name"] for suite in suites if suite["status"] == "infra-error" and CANNOT_JUDGE not in suite["detail"]]
    unjudged = [suite["name"] for suite in suites if suite["status"] == "infra-error" and CANNOT_JUDGE in suite["detail"]]
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
    if unjudged:  # it ran, but fails on the base as well: no verdict either way (results.cannot_vouch)
        parts.append(f"{', '.join(unjudged)} cannot judge it (a problem of the suite on the base, not of the patch)")
    if waiting_for_trust:  # never "every suite passed": they did not run (patchbot.testing.environments)
        parts.append(f"{', '.join(waiting_for_trust)} not run: this series {NEEDS_TRUST}")
    if not parts:
        if old:
            verb = "fails" if old == 1 else "fail"
            return (f"{start}: no new failures; {_count(old, 'test')} that already {verb} on "
                    f"{one_line(summary['base_ref'], NAME_WIDTH)} {verb} here too.")
        return f"{start}: every suite passed."
    return f"{start}: " + "; ".join(parts) + "."


def _base_line(summary: dict) -> str:
    """Which commit was the base, and why (an indented line: a Based-on reason names a title)."""
    return wrapped(one_line(f"Base: {summary['base'][:12]}, {summary['base_reason']}", NAME_WIDTH * 2), "  ", "    ")


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
    # "name  STATUS  what  duration", shown indented by 2: what wraps in its column, the
    # duration stays on the first line.
    lead = f"{suite['name']:<10} {status:<7} "
    duration = f"{suite['duration_s']:.1f} s"
    column = max(20, LINE_WIDTH - 2 - len(lead) - 8)
    lines = textwrap.wrap(what, column, break_long_words=False, break_on_hyphens=False) or [""]
    first = f"{lead}{lines[0]:<{column}} {duration:>7}"
    return "\n".join([first, *(" " * (2 + len(lead)) + line for line in lines[1:])])


def _since_previous(series: SeriesRecord, suites: list[dict]) -> str:
    if series.supersedes_id is None:
        return ""
    fixed = [test for suite in suites for test in suite["fixed_since_previous"]]
    still = [test for suite in suites for test in suite["still_failing_since_previous"]]
    new = [test for suite in suites for test in suite["new_since_previous"]]
    if not (fixed or still or new):
        return ""
    # One test a line: a name may end in its own full stop ("... notifications."), which a list
    # in a sentence doubled (issue 13: "notifications.; still failing").
    counts = [f"{len(fixed)} fixed"] if fixed else []
    counts += [f"{len(still)} still failing"] if still else []
    counts += [_count(len(new), "new failure")] if new else []
    lines = [f"Compared with the previous version: {', '.join(counts)}."]
    for label, tests in (("fixed", fixed), ("still failing", still), ("new failure", new)):
        lines += _names(label, tests)
    return "\n".join(lines)


def _names(label: str, tests: list[str]) -> list[str]:
    """Rows "  label          name", at most MAX_NAMES_IN_LINE of them, then "and N more"."""
    lead = f"  {label + ':':<15} "
    rows = [wrapped(_short(test), lead, " " * len(lead)) for test in tests[:MAX_NAMES_IN_LINE]]
    if len(tests) > MAX_NAMES_IN_LINE:
        rows.append(f"{' ' * len(lead)}and {len(tests) - MAX_NAMES_IN_LINE} more")
    return rows


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
                left.append(wrapped(name, "  ", "    "))
                continue
            if cases is None:
                cases = {case.name: case for case in result.report.cases} if result and result.report else {}
            case = cases.get(test)
            if case is not None and case.outcome in FAILING:
                text = failure_excerpt(case.detail) or (case.message if not case.detail else NO_OUTPUT)
            else:
                text = suite["detail"] or "the suite failed without a per-test report; see the full log"
            on_base = suite.get("new_failures_on_base", {}).get(test, "unknown")
            note = {"passed": f"passes on {base_ref}", "absent": f"not on {base_ref}",
                    "skipped": f"skipped on {base_ref}"}.get(on_base, f"{base_ref} could not be compared")
            excerpts.append({"name": name, "title": f"{suite['name']}: new failure; {note}",
                             "test": wrapped(_short(test), "  ", "    "),
                             "text": _indent(without_machine_details(text, folders))})
    more = {"count": len(left), "names": left[:MAX_MORE_NAMES]} if left else None
    return excerpts, more


def _git_words(detail: str) -> str:
    """What git said about the failing hunks, without its advice on resolving by hand."""
    lines = detail.splitlines()
    start = next((index for index, line in enumerate(lines) if line.startswith("Checking patch")), 0)
    return "\n".join(line for line in lines[start:] if line.startswith(("error:", "Checking", "    ", " ")) or
                     not line.startswith(("If you prefer", "To restore", "When you have", "Patch failed at", "hint:")))


def _apply_detail(detail: str, folders: tuple[str, ...]) -> str:
    return _indent(_code_dedented(without_machine_details(_git_words(detail), folders)), limit=APPLY_DETAIL_LINES)


def _code_dedented(text: str) -> str:
    """The code git quotes after "while searching for:" moved left as a block, two columns in
    from git's words: its own indentation (16 columns in aurweb's notify.py) would make its
    lines wrap in a 76-column reply."""
    lines, block = [], []
    for line in [*text.split("\n"), "error:"]:
        if block and line.startswith("error:"):
            lines += ["  " + code for code in textwrap.dedent("\n".join(block)).split("\n")]
            block = []
        if block or (lines and lines[-1].endswith("while searching for:") and not line.startswith("error:")):
            block.append(line)
        else:
            lines.append(line)
    return "\n".join(lines[:-1])


def _conflict_line(conflict: dict) -> str:
    """A file that did not apply, indented by 2: a long path alone on its line, the hunk's line below."""
    line = one_line(conflict["path"], NAME_WIDTH) + (f", the hunk at line {conflict['line']}" if conflict["line"] else "")
    return wrapped(line, "  ", "    ")


def _log_hint(config: Config, run: StoredTestRun, suites: list[dict]) -> str:
    """How a list reader gets the whole output, when no URL is configured; empty when no suite
    ran (a series that did not apply). `patchbot log` runs where patchbot does: say so."""
    if not suites or config.reply.log_url:
        return ""
    return wrapped(f"Full logs: patchbot log {run.id} on the test machine (ask its operator).")


def _log_urls(config: Config, run: StoredTestRun, suites: list[dict]) -> list[str]:
    """The logs of the suites that did not pass, each URL once ([reply] log_url)."""
    if not config.reply.log_url:
        return []
    return list(dict.fromkeys(config.reply.log_url.format(run=run.id, suite=suite["name"])
                              for suite in suites if suite["status"] != "pass"))


# The variable an environment's command fills and a suite's command reads (environments.py): in
# a reproduce block it is a folder of the reader's, made by the environment's own command.
_ENV_VARIABLE = re.compile(r"\$(?:PATCHBOT_ENV\b|\{PATCHBOT_ENV\})")


def _reproduce(config: Config, series: SeriesRecord, summary: dict) -> list[str]:
    """Lines a maintainer pastes as they are, in a clone of the repository: the base, the series
    fetched by a command, then each suite that failed or timed out (one the machine could not run
    is the operator's), in its environment made by that environment's own command, from its
    folder, and each new failure alone where its name says how (a TAP script, a pytest id).
    Each line is shown indented by 2 but a command's with a here-document, whose lines must stay
    as they are."""
    pull = summary.get("pull")
    if pull and pull["not_tested"]:
        return []
    failing = [suite for suite in summary["suites"] if suite["status"] in ("fail", "timeout")]
    if summary["applied"] and not failing:
        return []
    steps = [f"git checkout {summary['base'][:12]}"]
    steps += [one_line(f"git pull --no-ff {pull['url']} {pull['ref'] or 'HEAD'}", NAME_WIDTH)] if pull else \
        _fetch_series(config, series)
    if not summary["applied"]:
        return [f"  {step}" for step in steps]
    lines = [f"  {step}" for step in steps]
    made = set()
    for number, suite in enumerate(failing):
        configured = config.suites.get(suite["name"])
        environment = config.environments.get(configured.environment) if configured and configured.environment else None
        if environment is not None and environment.name not in made:
            made.add(environment.name)
            lines.append(f"  # the environment {environment.name}, made once")
            if "PATCHBOT_PINNED" in environment.command:
                names = ", ".join(path.name for path in environment.pinned_files)
                lines += wrapped(f"(PATCHBOT_PINNED: a folder with the operator's pinned files: {names})",
                                 "  # ", "  #   ").split("\n") if names else []
            lines += _command_lines(_with_env_folder(environment.command, environment.name))
        workdir = configured.workdir if configured else "."
        lines.append(f"  # the suite {suite['name']}, as patchbot ran it")
        if workdir not in (".", ""):
            lines.append(f"  cd {shlex.quote(workdir)}")
        folder = environment.name if environment is not None else None
        lines += _command_lines(_with_env_folder(suite["command"], folder) if folder else suite["command"])
        alone = [command for test in suite["new_failures"][:MAX_NAMES_IN_LINE] if (command := _run_alone(test))]
        if alone:
            lines.append(f"  # the new failure{'s' if len(alone) > 1 else ''} alone, with {'their' if len(alone) > 1 else 'its'} output")
            lines += [f"  {command}" for command in dict.fromkeys(alone)]
        if workdir not in (".", "") and number < len(failing) - 1:
            lines.append('  cd "$(git rev-parse --show-toplevel)"')
    return lines


_TAP_SCRIPT_TEST = re.compile(r"^([\w./-]+\.(?:t|sh)) #\d+")
_PYTEST_ID = re.compile(r"^([\w./-]+\.py)::\S+$")


def _run_alone(test: str) -> str:
    """The command that runs one failing test with its output, where its name says how: a
    sharness script verbosely (test_cmp's diff), a pytest node id; else ""."""
    shown = display_name(test)
    if script := _TAP_SCRIPT_TEST.match(shown):
        return f"bash {shlex.quote(script.group(1))} -v"
    if _PYTEST_ID.match(shown) and len(shown) <= NAME_WIDTH:
        return f"python3 -m pytest {shlex.quote(shown)}"  # Debian has no `python` outside a venv
    return ""


def _fetch_series(config: Config, series: SeriesRecord) -> list[str]:
    """The series as a command fetches it: b4 from the list's public-inbox, the service's own
    mbox URL, or patchbot on the machine that tested it (`patchbot series mbox`)."""
    # A Message-ID or URL too long for the line goes in a variable first: a line of one word
    # may be long, a command wrapped would not paste.
    if config.reply.lore_url:
        message_id = (series.cover_message_id or series.patches[0].message_id).strip("<>")
        lore = config.reply.lore_url.rstrip("/")
        # b4 finds a message under its midmask, lore.kernel.org/all/ unless told another archive.
        b4 = "b4 am" if lore.startswith("https://lore.kernel.org") else f"b4 -c b4.midmask={shlex.quote(lore + '/%s')} am"
        return _with_long_word("msgid", message_id, f"{b4} -o - {{}} | git am -3")
    if config.reply.mbox_url:
        url = config.reply.mbox_url.format(series=series.id, version=series.version)
        return _with_long_word("url", url, "curl -sSf {} | git am -3 --patch-format=mboxrd")
    return [f"patchbot series mbox {series.id} > series.mbox   # on the test machine",
            "git am -3 --patch-format=mboxrd series.mbox"]


def _with_long_word(variable: str, word: str, command: str) -> list[str]:
    """`command` with `word` in place of {}, as one line if it fits, else the word set first."""
    line = command.format(shlex.quote(word))
    if len(line) <= LINE_WIDTH - 2:
        return [line]
    return [f"{variable}={shlex.quote(word)}", command.format(f'"${variable}"')]


def _with_env_folder(command: str, name: str) -> str:
    return _ENV_VARIABLE.sub(f"$HOME/.cache/patchbot-env/{name}", command)


def _command_lines(command: str) -> list[str]:
    """A configured command's lines, printable, its own line breaks kept (a shell reads them),
    indented by 2 unless it holds a here-document: its body and end marker must stay as written."""
    indent = "" if "<<" in command else "  "
    return [indent + printable(line).rstrip() for line in command.strip("\n").split("\n")]


def _short(test: str) -> str:
    """A test's name as a reader types it (testreports.display_name), as one line of at most
    NAME_WIDTH characters."""
    return one_line(display_name(test), NAME_WIDTH)


def wrapped(text: str, first: str = "", rest: str = "  ") -> str:
    """Our own sentence in lines of at most LINE_WIDTH; the lines after the first start with
    `rest` (indented: only a line the template starts is at column 0). A word longer than a
    line (a URL) stays whole."""
    if not text:
        return ""
    return "\n".join(textwrap.wrap(text, LINE_WIDTH, initial_indent=first, subsequent_indent=rest,
                                   break_long_words=False, break_on_hyphens=False))


def _machine_words(detail: str, folders: tuple[str, ...]) -> str:
    """A detail from the machine (a time limit, an exit code), one line, without its paths and pids."""
    return one_line(without_machine_details(detail, folders), EXCERPT_WIDTH)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _indent(text: str, limit: int = EXCERPT_LINES) -> str:
    """Text as excerpt lines: indented, so that none can pose as a line of ours (a command, a
    signature, a verdict), made printable, at most `limit` lines (its last) and EXCERPT_BYTES;
    a line too long for LINE_WIDTH goes on under its start, two columns further in."""
    if not text.strip():
        return ""
    lines = text.expandtabs().split("\n")
    if len(lines) > limit:
        lines = [CUT_MARK, *lines[-limit:]]
    shown = []
    for line in capped_lines("\n".join(lines), limit + 1, EXCERPT_WIDTH, EXCERPT_BYTES):
        if len(EXCERPT_INDENT + line) <= LINE_WIDTH:
            shown.append(EXCERPT_INDENT + line)
            continue
        lead = re.match(r"\s*", line).group()
        shown += textwrap.wrap(line, LINE_WIDTH, initial_indent=EXCERPT_INDENT, subsequent_indent=EXCERPT_INDENT + lead + "  ",
                               break_long_words=False, break_on_hyphens=False)
    if len(shown) > limit + 1:
        shown = [EXCERPT_INDENT + CUT_MARK, *shown[-limit:]]
    return "\n".join(shown)


def sender_address(config: Config) -> str:
    """patchbot's own address, for loop checks."""
    found = address_of(config.mail.sender)
    return found.addr if found else ""
