"""Decide what a series' test results mean: new failures, pre-existing ones, fixes.

A test failing (FAIL or ERROR) at the tip is new when at the base it passed, was skipped, did
not exist, or the base has no usable run; it is pre-existing when it failed at the base too.
Suites without a per-test report count as one test named after the suite, and so does a suite
that failed although its report shows no failing case (a crash after the tests, say).

A suite's verdict: INFRA_ERROR when the tip run was the machine's failure (never the patch's)
or the suite cannot vouch for the patch, TIMEOUT when it was killed, FAIL when it has new
failures, PASS otherwise: pre-existing failures alone do not fail a patch, they are only
listed. SKIPPED when the suite did not apply.

A suite cannot vouch ("cannot judge", an infrastructure state, never PASS) when its tip fails
and the base run that would tell new failures from old ones is no judge (cannot_vouch):

- the base could not be run at all (a sandbox error, an environment that would not build);
- the base run is broken for the environment's reasons (patchbot.testing.suite_health: an import
  error, a pytest collection or usage error, a missing command or exit 126/127, no tests
  found): any one of these in the base run is enough, however many tests passed, because
  every test it touched fails at the tip too and would pass for "failing before";
- most of the base's tests fail: none passes, or more fail than pass (skipped ones do not
  count). A base with a few known failures (DNS offline: 22 of 321) still judges.

A broken tip alone is the patch's: a patch that deletes a command the suite calls (exit 127 at
the tip, a healthy base) is its FAIL. A tip that ran no test with no base to compare says
"cannot judge: the suite ran no test".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from patchbot.testing.suite_health import Breakage
from patchbot.testing.reports import FAILING, Outcome, TestReport

# A series' summary outcome is the first of these that any suite has. A new failure is certain
# blame; a timeout may be the patch's (an endless loop) or the machine's; an infrastructure error
# is never the patch's; SKIPPED only when no suite ran at all.
SEVERITY = (Outcome.FAIL, Outcome.TIMEOUT, Outcome.INFRA_ERROR, Outcome.PASS, Outcome.SKIPPED)

# Base runs whose results say which tests failed before the patch.
_COMPARABLE = frozenset({Outcome.PASS, Outcome.FAIL})


@dataclass(frozen=True)
class SuiteResult:
    """One suite run at one commit."""

    suite: str
    outcome: Outcome  # PASS, FAIL, TIMEOUT, INFRA_ERROR (could not start, sandbox, report), SKIPPED
    report: TestReport | None  # None without a per-test report (exit-code suites, infra errors)
    duration_s: float
    detail: str = ""  # "killed after 600 s", "bwrap: ...", "exit code 2"
    exit_code: int | None = None  # the suite command's; None when it never exited (or is not known)
    broken: Breakage | None = None  # a failed run that shows its environment is broken (suite_health)


@dataclass(frozen=True)
class SuiteVerdict:
    """A suite's result at the tip, judged against the base and the previous version."""

    suite: str
    outcome: Outcome  # PASS, FAIL, TIMEOUT, INFRA_ERROR or SKIPPED (see the module docstring)
    passed: int
    failed: int
    skipped: int
    new_failures: tuple[str, ...]  # failing at tip; passing, skipped or absent at base
    preexisting_failures: tuple[str, ...]  # failing at tip and at base
    fixed: tuple[str, ...]  # failing at base, passing at tip
    fixed_since_previous: tuple[str, ...]  # failing with the previous version, passing now
    still_failing_since_previous: tuple[str, ...]
    new_since_previous: tuple[str, ...]  # failing now, not with the previous version
    duration_s: float
    detail: str


@dataclass(frozen=True)
class Verdict:
    """Every suite's verdict for one series version."""

    suites: tuple[SuiteVerdict, ...]

    @property
    def new_failures(self) -> tuple[tuple[str, str], ...]:
        """(suite, test) for every new failure."""
        return tuple((verdict.suite, test) for verdict in self.suites for test in verdict.new_failures)

    @property
    def infra_errors(self) -> tuple[str, ...]:
        return self._suites_with(Outcome.INFRA_ERROR)

    @property
    def timed_out(self) -> tuple[str, ...]:
        return self._suites_with(Outcome.TIMEOUT)

    @property
    def outcome(self) -> Outcome:
        """The most severe suite outcome, by SEVERITY."""
        present = {verdict.outcome for verdict in self.suites}
        return next((outcome for outcome in SEVERITY if outcome in present), Outcome.SKIPPED)

    def _suites_with(self, outcome: Outcome) -> tuple[str, ...]:
        return tuple(verdict.suite for verdict in self.suites if verdict.outcome is outcome)


def compare(
    tip: Sequence[SuiteResult], base: Mapping[str, SuiteResult], previous: Mapping[str, SuiteResult]
) -> Verdict:
    """Judge every suite run at the tip; base and previous map suite names to their runs."""
    return Verdict(tuple(compare_suite(run, base.get(run.suite), previous.get(run.suite)) for run in tip))


def compare_suite(tip: SuiteResult, base: SuiteResult | None, previous: SuiteResult | None) -> SuiteVerdict:
    """Judge one suite's tip run against its base run and the previous version's run (None: not run)."""
    failing = failing_tests(tip)
    base_failing = failing_tests(base) if _comparable(base) else ()
    previous_failing = failing_tests(previous) if _comparable(previous) else ()
    passing = passing_tests(tip)
    unjudged = cannot_vouch(tip, base) if tip.outcome in _COMPARABLE else ""
    new = () if unjudged else _without(failing, base_failing)  # no judge: nothing is known to be new
    return SuiteVerdict(
        suite=tip.suite,
        outcome=_suite_outcome(tip, unjudged, new),
        passed=len(passing) if tip.report is None else tip.report.passed,
        failed=len(failing),
        skipped=tip.report.skipped if tip.report else 0,
        new_failures=new,
        preexisting_failures=_within(failing, base_failing),
        fixed=_within(base_failing, passing),
        fixed_since_previous=_within(previous_failing, passing),
        still_failing_since_previous=_within(failing, previous_failing),
        new_since_previous=_without(failing, previous_failing) if _comparable(previous) else (),
        duration_s=tip.duration_s,
        detail=_detail(tip, base, unjudged),
    )


def failing_tests(run: SuiteResult) -> tuple[str, ...]:
    """Names of the failing tests, in report order; the suite's own name if it failed without one."""
    if run.outcome is Outcome.INFRA_ERROR:
        return ()
    failing = _names_with(run.report, FAILING)
    if run.outcome is Outcome.FAIL and not failing:
        return (run.suite,)
    return failing


def passing_tests(run: SuiteResult) -> frozenset[str]:
    """Names of the passing tests, and the suite's own name if the suite passed."""
    suite_itself = {run.suite} if run.outcome is Outcome.PASS else set()
    return frozenset(_names_with(run.report, {Outcome.PASS})) | suite_itself


def _names_with(report: TestReport | None, outcomes: Collection[Outcome]) -> tuple[str, ...]:
    return tuple(case.name for case in report.cases if case.outcome in outcomes) if report else ()


def _comparable(run: SuiteResult | None) -> bool:
    return run is not None and run.outcome in _COMPARABLE


def _suite_outcome(tip: SuiteResult, unjudged: str, new_failures: tuple[str, ...]) -> Outcome:
    if tip.outcome in (Outcome.INFRA_ERROR, Outcome.TIMEOUT, Outcome.SKIPPED):
        return tip.outcome
    if unjudged:
        return Outcome.INFRA_ERROR
    return Outcome.FAIL if new_failures else Outcome.PASS


def cannot_vouch(tip: SuiteResult, base: SuiteResult | None) -> str:
    """Why the suite cannot judge the patch, or "" when it can (the rule: the module docstring).

    A PASS must be earned (issue 12: a broken venv made 101 of 109 sharness tests fail at base
    and tip, and a deliberate regression got PASS, "failing before too")."""
    if tip.report is not None and tip.report.total == 0 and (base is None or tip.outcome is Outcome.PASS):
        return "the suite ran no test"
    if base is None or not failing_tests(tip):
        return ""  # a tip that passes whole needs no base to vouch for it
    if base.outcome is Outcome.INFRA_ERROR:
        return "the base could not be run"
    if base.outcome is not Outcome.FAIL:
        return ""
    why = base_broken(base)
    return f"the suite is broken on the base ({why})" if why else ""


def base_broken(base: SuiteResult) -> str:
    """Why a failed base run is no judge, in our words, or "": its environment is broken, it
    holds no test, or most of its tests fail."""
    if base.broken is not None:
        return str(base.broken)
    if base.report is not None and base.report.total == 0:
        return "no tests found"
    failed, passed = len(failing_tests(base)), len(passing_tests(base))
    if passed == 0 or failed > passed:
        return f"{failed} failing, {passed} passing there"
    return ""


def _detail(tip: SuiteResult, base: SuiteResult | None, unjudged: str) -> str:
    """The tip's detail, what the base run said, and last, in our words only, why the suite
    cannot judge (report.CANNOT_JUDGE shows the text from there on)."""
    notes = [tip.detail] if tip.detail else []
    if base is not None and base.outcome in (Outcome.INFRA_ERROR, Outcome.TIMEOUT) and failing_tests(tip):
        if base.outcome is Outcome.TIMEOUT:
            notes.append("the base timed out, so every failure counts as new")
        notes.extend([f"base: {base.detail}"] if base.detail else [])
    if unjudged:
        notes.append(f"cannot judge: {unjudged}")
    return "; ".join(notes)


def _within(names: Sequence[str], others: Collection[str]) -> tuple[str, ...]:
    """`names` that are also in `others`, in the order of `names`."""
    others = frozenset(others)
    return tuple(name for name in names if name in others)


def _without(names: Sequence[str], others: Collection[str]) -> tuple[str, ...]:
    """`names` that are not in `others`, in the order of `names`."""
    others = frozenset(others)
    return tuple(name for name in names if name not in others)
