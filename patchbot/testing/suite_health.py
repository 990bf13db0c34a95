"""Recognise, from a failed suite run's exit code, output and report, that its environment is broken.

A run that fails this way says nothing of the code it ran: a module that is not installed, a
collection that stopped before any test, a command that is not there, a run that found no test.
On the base such a run cannot vouch for a patch (results.cannot_vouch); at the tip it is the
patch's failure when the base was healthy (a patch that deletes a command the suite calls).

The rules, in order (the first that holds names the breakage):

- missing command: the shell's exit 126 or 127, a shell's "X: not found" / "command not found"
  line, or Python's `FileNotFoundError` naming a bare program;
- import error: `ModuleNotFoundError`, `ImportError`, or `python3: No module named X` (the
  interpreter without the test runner);
- collection error: pytest's exit 2 with "error during collection" / "ERROR collecting", or a
  JUnit case pytest wrote as a "collection failure";
- usage error: pytest's exit 4 (a bad option, a test folder that is not there);
- no tests found: pytest's exit 5, a report that holds no test, TAP output without a plan or a
  test, a TAP stream that only says it stopped (no plan, bail out), a report not written.

Evidence is our words plus a name taken from the output through a narrow pattern (a module, a
command, a file), so that it is safe to show in a reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from patchbot.testing.reports import TestReport

# The cases parse_tap adds itself when a stream stops early: none of them is a test that ran.
_TAP_STOP_CASES = frozenset({"plan", "bail out"})
_TAP_MISSING = "missing: the plan announced"

_SHELL_NOT_FOUND = re.compile(r"(?m)^\S*sh: \d+: (?:exec: )?([\w.+/-]+): not found\s*$")  # dash
_SHELL_COMMAND_NOT_FOUND = re.compile(r"(?m)(?:^|: )([\w.+-]+): command not found\s*$")  # bash
# A bare name without a dot: a program run by subprocess, not a data file.
_PYTHON_NO_PROGRAM = re.compile(r"FileNotFoundError: \[Errno 2\] No such file or directory: '([\w+-]+)'")
_MODULE_NOT_FOUND = re.compile(r"(?m)^(?:E\s+)?ModuleNotFoundError: (No module named '[\w.]+')")
_IMPORT_ERROR = re.compile(r"(?m)^(?:E\s+)?ImportError: (cannot import name '[\w.]+'(?: from '[\w.]+')?|No module named '?[\w.]+'?)")
_INTERPRETER_NO_MODULE = re.compile(r"(?m)^\S*python[\d.]*: (No module named [\w.]+)")
_COLLECTION = re.compile(r"errors? during collection|^_* ?ERROR collecting ", re.MULTILINE)
_COLLECTING_FILE = re.compile(r"(?m)ERROR collecting ([\w./-]+)")
_PYTEST_USAGE = re.compile(r"(?m)^ERROR: (usage|file or directory not found|not found)(?::| )\s*([\w./:-]*)")


class BreakageKind(Enum):
    MISSING_COMMAND = "missing command"
    IMPORT_ERROR = "import error"
    COLLECTION_ERROR = "collection error"
    USAGE_ERROR = "usage error"
    NO_TESTS = "no tests found"


@dataclass(frozen=True)
class Breakage:
    """Why a failed run says nothing of the code: the kind, and one line of evidence."""

    kind: BreakageKind
    evidence: str  # "No module named 'sqlalchemy'", "php", "pytest exit 5"

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.evidence}" if self.evidence else self.kind.value


@dataclass(frozen=True)
class FailedRun:
    """What is known of a failed run when it is judged."""

    command: str
    exit_code: int | None
    output: str
    report: TestReport | None
    report_error: str = ""  # why no report could be read ("no TAP found in the output")

    @property
    def pytest(self) -> bool:
        return "pytest" in self.command or "pytest" in self.output[:4096]


def _missing_command(run: FailedRun) -> str | None:
    for pattern in (_SHELL_COMMAND_NOT_FOUND, _SHELL_NOT_FOUND, _PYTHON_NO_PROGRAM):
        if found := pattern.search(run.output):
            return found.group(1).rsplit("/", 1)[-1]
    if run.exit_code in (126, 127):
        return f"exit {run.exit_code}"
    return None


def _import_error(run: FailedRun) -> str | None:
    texts = [run.output, *(case.detail or case.message for case in (run.report.cases if run.report else ()))]
    for text in texts:
        for pattern in (_MODULE_NOT_FOUND, _IMPORT_ERROR, _INTERPRETER_NO_MODULE):
            if found := pattern.search(text):
                return found.group(1)
    return None


def _collection_error(run: FailedRun) -> str | None:
    cases = [case for case in (run.report.cases if run.report else ()) if case.message == "collection failure"]
    if not cases and not (run.exit_code == 2 and _COLLECTION.search(run.output)):
        return None
    files = _COLLECTING_FILE.findall(run.output) or [case.name for case in cases]
    return f"pytest could not collect {len(files)} file{'' if len(files) == 1 else 's'}" if files else "pytest collection"


def _usage_error(run: FailedRun) -> str | None:
    if run.exit_code != 4 or not run.pytest:
        return None
    found = _PYTEST_USAGE.search(run.output)
    if found is None:
        return "pytest exit 4"
    what, name = found.group(1), found.group(2)[:80]
    return f"pytest exit 4, {what}: {name}" if name and what != "usage" else f"pytest exit 4, {what}"


def _no_tests(run: FailedRun) -> str | None:
    if run.exit_code == 5 and run.pytest:
        return "pytest exit 5, no tests collected"
    if run.report is None:
        return f"no test report ({run.report_error[:80]})" if run.report_error else None
    real = [case for case in run.report.cases
            if case.name not in _TAP_STOP_CASES and not case.message.startswith(_TAP_MISSING)]
    if not real:
        return "the report holds no test"
    return None


# The rules, in order: an import error usually also stops collection, and its module is the
# better evidence; a command that is not there is the first thing to fix.
RULES: tuple[tuple[BreakageKind, Callable[[FailedRun], str | None]], ...] = (
    (BreakageKind.MISSING_COMMAND, _missing_command),
    (BreakageKind.IMPORT_ERROR, _import_error),
    (BreakageKind.COLLECTION_ERROR, _collection_error),
    (BreakageKind.USAGE_ERROR, _usage_error),
    (BreakageKind.NO_TESTS, _no_tests),
)


def breakage_of(run: FailedRun) -> Breakage | None:
    """The first rule that holds for a failed run, or None: it failed the way tests fail."""
    for kind, rule in RULES:
        evidence = rule(run)
        if evidence is not None:
            return Breakage(kind, evidence)
    return None
