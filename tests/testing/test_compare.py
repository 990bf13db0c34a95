"""Judging test results: what is new, pre-existing, fixed, and what the machine is to blame for."""

import pytest

from patchbot.testing.verdict import SuiteResult, SuiteVerdict, Verdict, compare, compare_suite
from patchbot.testing.reports import Outcome, TestCase, TestReport

PASS, FAIL, ERROR, SKIPPED = Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.SKIPPED
TIMEOUT, INFRA_ERROR = Outcome.TIMEOUT, Outcome.INFRA_ERROR


def run(outcome=PASS, suite="python", detail="", **cases: Outcome) -> SuiteResult:
    """A suite run; keyword arguments are its test cases, none means an exit-code suite."""
    if not cases:
        return SuiteResult(suite, outcome, None, 1.5, detail)
    report = TestReport(tuple(TestCase(name, case, "", "") for name, case in cases.items()))
    return SuiteResult(suite, outcome, report, 1.5, detail)


def verdict_with(suite, outcome) -> SuiteVerdict:
    return compare_suite(run(outcome, suite=suite), None, None)


# -- new or pre-existing -------------------------------------------------------------------------

def test_failure_that_passed_at_base_is_new():
    verdict = compare_suite(run(FAIL, test_info=FAIL), run(PASS, test_info=PASS), None)
    assert verdict.new_failures == ("test_info",)
    assert verdict.outcome is FAIL


def test_failure_skipped_at_base_is_new():
    verdict = compare_suite(run(FAIL, test_info=FAIL), run(PASS, test_info=SKIPPED), None)
    assert verdict.new_failures == ("test_info",)


def test_failure_absent_at_base_is_new():
    verdict = compare_suite(run(FAIL, test_info=PASS, test_new=FAIL), run(PASS, test_info=PASS), None)
    assert verdict.new_failures == ("test_new",)


def test_error_counts_as_a_failure():
    verdict = compare_suite(run(FAIL, test_info=ERROR), run(PASS, test_info=PASS), None)
    assert verdict.new_failures == ("test_info",)


def test_failure_at_base_too_is_preexisting():
    verdict = compare_suite(run(FAIL, test_info=FAIL), run(FAIL, test_info=ERROR), None)
    assert verdict.preexisting_failures == ("test_info",)
    assert verdict.new_failures == ()


def test_preexisting_failures_alone_pass_the_patch():
    verdict = compare_suite(run(FAIL, test_info=FAIL, test_search=PASS), run(FAIL, test_info=FAIL, test_search=PASS), None)
    assert verdict.outcome is PASS
    assert verdict.preexisting_failures == ("test_info",)


def test_new_failures_keep_the_report_order():
    tip = run(FAIL, test_c=FAIL, test_a=FAIL, test_b=FAIL)
    assert compare_suite(tip, run(PASS), None).new_failures == ("test_c", "test_a", "test_b")


# -- fixed -------------------------------------------------------------------------------------

def test_failing_at_base_and_passing_at_tip_is_fixed():
    verdict = compare_suite(run(PASS, test_info=PASS), run(FAIL, test_info=FAIL), None)
    assert verdict.fixed == ("test_info",)
    assert verdict.outcome is PASS


def test_a_failing_test_that_was_removed_is_not_fixed():
    verdict = compare_suite(run(PASS, test_search=PASS), run(FAIL, test_info=FAIL, test_search=PASS), None)
    assert verdict.fixed == ()


# -- when the base has no usable run -------------------------------------------------------------

def test_without_a_base_run_every_failure_is_new():
    verdict = compare_suite(run(FAIL, test_info=FAIL, test_search=FAIL), None, None)
    assert verdict.new_failures == ("test_info", "test_search")
    assert verdict.detail == ""


def test_when_the_base_could_not_run_the_suite_cannot_judge_and_the_detail_says_why():
    """Issue 12 item 6: a base the machine could not run blames nothing on the patch; the run is
    retried (pipeline), not answered with failures nobody compared."""
    base = run(INFRA_ERROR, detail="bwrap: Creating new namespace failed")
    verdict = compare_suite(run(FAIL, test_info=FAIL), base, None)
    assert verdict.new_failures == ()
    assert verdict.outcome is INFRA_ERROR
    assert verdict.detail.endswith("cannot judge: the base could not be run")
    assert "base: bwrap: Creating new namespace failed" in verdict.detail


def test_when_the_base_timed_out_failures_are_new_and_the_detail_says_why():
    verdict = compare_suite(run(FAIL, test_info=FAIL), run(TIMEOUT, detail="killed after 600 s"), None)
    assert verdict.new_failures == ("test_info",)
    assert "the base timed out" in verdict.detail


def test_a_broken_base_is_not_mentioned_when_nothing_fails():
    verdict = compare_suite(run(PASS, test_info=PASS), run(INFRA_ERROR, detail="disk full"), None)
    assert verdict.detail == ""


def test_a_suite_skipped_at_base_makes_every_failure_new():
    verdict = compare_suite(run(FAIL, test_info=FAIL), run(SKIPPED), None)
    assert verdict.new_failures == ("test_info",)


# -- a suite that cannot vouch -------------------------------------------------------------------

def test_a_suite_that_ran_no_test_cannot_pass():
    collected_nothing = SuiteResult("python", PASS, TestReport(()), 0.4)
    verdict = compare_suite(collected_nothing, None, None)
    assert verdict.outcome is INFRA_ERROR
    assert verdict.detail == "cannot judge: the suite ran no test"


def test_a_base_where_no_test_passes_cannot_vouch_for_a_regression():
    """Issue 12: an empty venv made nearly every test fail at base and tip alike, and a patch that
    broke a test on purpose got PASS ("failing before too")."""
    broken = {f"t{number}": FAIL for number in range(101)} | {f"ok{number}": PASS for number in range(8)}
    verdict = compare_suite(run(FAIL, **broken), run(FAIL, **broken), None)
    assert verdict.new_failures == ()
    assert verdict.outcome is INFRA_ERROR
    assert "broken on the base (101 failing, 8 passing there)" in verdict.detail


def test_a_base_where_most_tests_pass_still_judges():
    few = {f"t{number}": PASS for number in range(100)} | {"test_dns": FAIL}
    verdict = compare_suite(run(FAIL, **few), run(FAIL, **few), None)
    assert verdict.outcome is PASS and verdict.preexisting_failures == ("test_dns",)


# -- suites without per-test reports -------------------------------------------------------------

def test_exit_code_suite_failing_only_at_tip_is_one_new_failure_named_after_it():
    verdict = compare_suite(run(FAIL, suite="php"), run(PASS, suite="php"), None)
    assert verdict.new_failures == ("php",)
    assert (verdict.outcome, verdict.passed, verdict.failed) == (FAIL, 0, 1)


def test_exit_code_suite_failing_at_both_cannot_judge():
    """Its one "test" fails on the base: nothing there passes, so it cannot vouch for the patch."""
    verdict = compare_suite(run(FAIL, suite="php"), run(FAIL, suite="php"), None)
    assert verdict.preexisting_failures == ("php",)
    assert verdict.outcome is INFRA_ERROR
    assert "cannot judge: the suite is broken on the base" in verdict.detail


def test_exit_code_suite_passing_again_is_fixed():
    verdict = compare_suite(run(PASS, suite="php"), run(FAIL, suite="php"), None)
    assert verdict.fixed == ("php",)
    assert (verdict.passed, verdict.failed) == (1, 0)


def test_suite_failing_with_no_failing_case_fails_under_its_own_name():
    # pytest exits 1 when a session-scoped fixture's teardown fails after every test passed.
    verdict = compare_suite(run(FAIL, test_info=PASS), run(PASS, test_info=PASS), None)
    assert verdict.new_failures == ("python",)


# -- failures of the machinery -------------------------------------------------------------------

def test_infra_error_at_tip_is_never_the_patch_s_fault():
    verdict = compare_suite(run(INFRA_ERROR, detail="report unreadable"), run(PASS, test_info=PASS), None)
    assert verdict.outcome is INFRA_ERROR
    assert verdict.new_failures == ()
    assert verdict.detail == "report unreadable"


def test_timeout_at_tip_is_reported_as_timeout():
    verdict = compare_suite(run(TIMEOUT, detail="killed after 600 s"), run(PASS), None)
    assert verdict.outcome is TIMEOUT
    assert verdict.detail == "killed after 600 s"


def test_timeout_with_a_partial_report_still_lists_new_failures():
    verdict = compare_suite(run(TIMEOUT, test_info=FAIL), run(PASS, test_info=PASS), None)
    assert verdict.outcome is TIMEOUT
    assert verdict.new_failures == ("test_info",)


def test_a_suite_skipped_at_tip_is_skipped():
    assert compare_suite(run(SKIPPED), run(PASS), None).outcome is SKIPPED


# -- counts ------------------------------------------------------------------------------------

def test_counts_come_from_the_tip_report():
    tip = run(FAIL, a=PASS, b=PASS, c=SKIPPED, d=FAIL, e=ERROR)
    verdict = compare_suite(tip, None, None)
    assert (verdict.passed, verdict.failed, verdict.skipped) == (2, 2, 1)
    assert verdict.duration_s == 1.5


# -- compared with the previous version ----------------------------------------------------------

def test_compared_with_the_previous_version():
    previous = run(FAIL, test_info=FAIL, test_search=FAIL, test_suggest=PASS)
    tip = run(FAIL, test_info=PASS, test_search=FAIL, test_suggest=FAIL)
    verdict = compare_suite(tip, None, previous)
    assert verdict.fixed_since_previous == ("test_info",)
    assert verdict.still_failing_since_previous == ("test_search",)
    assert verdict.new_since_previous == ("test_suggest",)


def test_without_a_previous_version_nothing_is_compared_with_it():
    verdict = compare_suite(run(FAIL, test_info=FAIL), None, None)
    assert verdict.fixed_since_previous == ()
    assert verdict.still_failing_since_previous == ()
    assert verdict.new_since_previous == ()


def test_a_previous_run_that_could_not_start_is_not_compared_with():
    verdict = compare_suite(run(FAIL, test_info=FAIL), None, run(INFRA_ERROR))
    assert verdict.new_since_previous == ()


# -- the whole series ----------------------------------------------------------------------------

def test_compare_matches_base_and_previous_runs_by_suite_name():
    tip = [run(FAIL, suite="php", testInfo=FAIL, testSearch=PASS), run(FAIL, suite="python", test_info=FAIL)]
    base = {"php": run(FAIL, suite="php", testInfo=FAIL, testSearch=PASS), "python": run(PASS, suite="python", test_info=PASS)}
    verdict = compare(tip, base, {})
    assert [(suite.suite, suite.outcome) for suite in verdict.suites] == [("php", PASS), ("python", FAIL)]
    assert verdict.new_failures == (("python", "test_info"),)


def test_verdict_names_the_suites_the_machine_failed():
    suites = (verdict_with("php", INFRA_ERROR), verdict_with("python", TIMEOUT), verdict_with("parity", PASS))
    verdict = Verdict(suites)
    assert verdict.infra_errors == ("php",)
    assert verdict.timed_out == ("python",)


@pytest.mark.parametrize(
    ("suite_outcomes", "summary"),
    [
        ((PASS, PASS), PASS),
        ((PASS, INFRA_ERROR), INFRA_ERROR),
        ((INFRA_ERROR, TIMEOUT), TIMEOUT),
        ((TIMEOUT, FAIL, INFRA_ERROR), FAIL),
        ((SKIPPED, PASS), PASS),
        ((SKIPPED,), SKIPPED),
        ((), SKIPPED),
    ],
)
def test_summary_is_the_most_severe_suite_outcome(suite_outcomes, summary):
    verdict = Verdict(tuple(verdict_with(f"suite{i}", outcome) for i, outcome in enumerate(suite_outcomes)))
    assert verdict.outcome is summary
