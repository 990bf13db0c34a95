"""What in a failed run says its environment is broken (patchbot.testing.suite_health), and what the
verdict makes of it: the machine's on the base, the patch's at the tip alone."""

import pytest

from patchbot.testing.verdict import SuiteResult, compare_suite
from patchbot.testing.suite_health import Breakage, BreakageKind, FailedRun, breakage_of
from patchbot.testing.reports import Outcome, TestCase, TestReport

PYTEST = "python3 -m pytest -q test/python --junitxml=r.xml"
COLLECTION_OUTPUT = """
==================================== ERRORS ====================================
_________________________ ERROR collecting t/test_a.py _________________________
ImportError while importing test module '/tmp/pyt/t/test_a.py'.
t/test_a.py:1: in <module>
    import sqlalchemy
E   ModuleNotFoundError: No module named 'sqlalchemy'
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
"""


def report(*cases: tuple[str, Outcome, str]) -> TestReport:
    return TestReport(tuple(TestCase(name, outcome, message, "") for name, outcome, message in cases))


@pytest.mark.parametrize(("command", "exit_code", "output", "cases", "expected"), [
    # what the shells say of a command that is not there
    ("sh test/tools.sh", 127, "test/tools.sh: 3: aurblup: not found\n", None, "missing command: aurblup"),
    ("./t1100.sh", 1, "./t1100.sh: line 5: php: command not found\nnot ok 1 - php\n", None, "missing command: php"),
    ("sh -c x", 127, "sh: 1: exec: phpunit: not found\n", None, "missing command: phpunit"),
    ("sh run", 126, "", None, "missing command: exit 126"),
    (PYTEST, 1, "E   FileNotFoundError: [Errno 2] No such file or directory: 'makepkg'\n", None, "missing command: makepkg"),
    # Python without what the tests import
    (PYTEST, 2, COLLECTION_OUTPUT, None, "import error: No module named 'sqlalchemy'"),
    (PYTEST, 1, "/usr/bin/python3: No module named pytest\n", None, "import error: No module named pytest"),
    (PYTEST, 1, "E   ImportError: cannot import name 'Base' from 'aurweb.models'\n", None,
     "import error: cannot import name 'Base' from 'aurweb.models'"),
    # pytest's own exit codes
    (PYTEST, 2, "ERROR collecting test/python/test_x.py\nInterrupted: 1 error during collection\n", None,
     "collection error: pytest could not collect 1 file"),
    (PYTEST, 1, "", [("test.python.test_x", Outcome.ERROR, "collection failure")],
     "collection error: pytest could not collect 1 file"),
    (PYTEST, 4, "ERROR: file or directory not found: test/python\n", None,
     "usage error: pytest exit 4, file or directory not found: test/python"),
    (PYTEST, 4, "ERROR: usage: python -m pytest [options]\n", None, "usage error: pytest exit 4, usage"),
    (PYTEST, 5, "no tests ran in 0.01s\n", [], "no tests found: pytest exit 5, no tests collected"),
    # reports without a test
    ("sh t.sh", 1, "1..3\n", [("test 1", Outcome.ERROR, "missing: the plan announced 3 tests")],
     "no tests found: the report holds no test"),
    ("sh t.sh", 1, "Bail out! no database\n", [("bail out", Outcome.ERROR, "no database")],
     "no tests found: the report holds no test"),
])
def test_a_broken_environment_is_named_by_its_first_rule(command, exit_code, output, cases, expected):
    run_report = None if cases is None else report(*cases)
    assert str(breakage_of(FailedRun(command, exit_code, output, run_report))) == expected


def test_tap_output_without_tap_is_no_tests_found():
    run = FailedRun("sh t.sh", 1, "Segmentation fault\n", None, "no TAP found in the output")
    assert breakage_of(run) == Breakage(BreakageKind.NO_TESTS, "no test report (no TAP found in the output)")


@pytest.mark.parametrize("output", [
    "E   assert 404 == 200\nE   AssertionError: page not found\n",  # an assertion about "not found"
    "not ok 2 - search finds nothing\n# got: 'not found'\n",
    "exit 4 from another test runner\n",
])
def test_failures_of_tests_are_not_a_broken_environment(output):
    cases = report(("t", Outcome.FAIL, "assert"), ("u", Outcome.PASS, ""))
    assert breakage_of(FailedRun("sh t.sh", 4 if "exit 4" in output else 1, output, cases)) is None


def failed(broken: Breakage | None, **cases: Outcome) -> SuiteResult:
    cases_report = TestReport(tuple(TestCase(name, outcome, "", "") for name, outcome in cases.items()))
    return SuiteResult("python", Outcome.FAIL, cases_report, 1.0, "exit code 1", 1, broken)


IMPORT_ERROR = Breakage(BreakageKind.IMPORT_ERROR, "No module named 'sqlalchemy'")


def test_an_import_error_on_the_base_cannot_judge_however_many_tests_pass_there():
    """Every test the missing module touches fails at the tip too: it would pass for 'failing before'."""
    base = failed(IMPORT_ERROR, test_orm=Outcome.ERROR, **{f"t{n}": Outcome.PASS for n in range(50)})
    tip = failed(IMPORT_ERROR, test_orm=Outcome.ERROR, test_info=Outcome.FAIL, **{f"t{n}": Outcome.PASS for n in range(49)})
    verdict = compare_suite(tip, base, None)
    assert verdict.outcome is Outcome.INFRA_ERROR and verdict.new_failures == ()
    assert verdict.detail.endswith("cannot judge: the suite is broken on the base (import error: No module named 'sqlalchemy')")


def test_a_broken_tip_on_a_healthy_base_is_the_patch_s_failure():
    base = SuiteResult("python", Outcome.PASS, report(("test_info", Outcome.PASS, "")), 1.0, "", 0)
    tip = failed(IMPORT_ERROR, test_info=Outcome.ERROR)
    verdict = compare_suite(tip, base, None)
    assert (verdict.outcome, verdict.new_failures) == (Outcome.FAIL, ("test_info",))
    assert "cannot judge" not in verdict.detail


def test_a_base_with_a_few_failures_still_judges():
    base = failed(None, test_dns=Outcome.FAIL, **{f"t{n}": Outcome.PASS for n in range(20)})
    tip = failed(None, test_dns=Outcome.FAIL, test_info=Outcome.FAIL, **{f"t{n}": Outcome.PASS for n in range(20)})
    verdict = compare_suite(tip, base, None)
    assert (verdict.outcome, verdict.new_failures, verdict.preexisting_failures) == (Outcome.FAIL, ("test_info",), ("test_dns",))
