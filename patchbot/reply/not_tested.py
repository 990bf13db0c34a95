"""The one reply for a series the machine could not test (issue 12 item 6): which suites, a line of
why each, and what did run; no failures to blame and nothing to reproduce.

Why a suite could not run is the operator's to read in full (`patchbot status`, `series show`):
the list gets a fixed phrase per kind of failure, or, for a suite broken on the base, the words
of results.cannot_vouch (ours, with a module or command name), without the machine's paths.
"""

from __future__ import annotations

from patchbot.config.records import Config
from patchbot.text.render import render
from patchbot.reply.report import (
    CANNOT_JUDGE, COULD_NOT_RUN, NAME_WIDTH, Reply, machine_folders, result_context, series_reply,
)
from patchbot.text.safe_text import one_line, without_machine_details
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord, StoredTestRun

# What the list reads of a suite the machine failed, by what its detail holds; first match wins.
_REASONS = (
    ("could not be built", "its environment could not be built"),
    ("is not set up", "its environment could not be built"),
    ("sandbox:", "the sandbox could not start it"),
    ("stopped from outside", "the test machine stopped it"),
    ("no test report", "it left no test report to read"),
    ("GitLab", "the CI could not run it"),
)
# A run that never started (GitError, TestRunError): the repository, or the series itself.
NO_RUN_REASON = "the repository could not be read, so no suite ran"


def not_tested_reply(store: Store, config: Config, series: SeriesRecord, run: StoredTestRun | None,
                     request: int, attempts: int) -> Reply:
    """In place of the result of a test request whose infrastructure retries are spent."""
    who = f"v{series.version} of this series" if (series.total or 0) > 1 or series.version > 1 else "This patch"
    lines = []
    if run is not None:
        folders = machine_folders(config)
        shown = result_context(config, series, run)["suite_lines"]
        for suite, line in zip(run.summary["suites"], shown):
            if suite["status"] == "infra-error":
                line = f"{suite['name']:<10} ERROR   {suite_reason(suite['detail'], folders)}"
            lines.append(line.strip())
    body = render("reply/not-tested.txt", who=who, attempts=attempts, suites=lines,
                  reason="" if run is not None else NO_RUN_REASON)
    return series_reply(store, config, series, request, body)


def suite_reason(detail: str, folders: tuple[str, ...]) -> str:
    """One line of why a suite could not run or judge, in words fit for the list."""
    if CANNOT_JUDGE in detail:
        return one_line(without_machine_details(detail[detail.index(CANNOT_JUDGE):], folders), NAME_WIDTH)
    return next((words for clue, words in _REASONS if clue in detail), COULD_NOT_RUN)
