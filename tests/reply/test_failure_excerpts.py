"""What a reply shows of a failing test: its name as a reader types it, and the failing comparison.

Read from real outputs (data/, described in test_golden_replies.py) and from small real runs of
prove and Test::More here: sharness's test_cmp diff, which a verbose script prints *before* its
`not ok` line (and prove's JUnit formatter keeps only in the suite's <system-out>), pytest's
assertion lines, Test::More's got/expected, never the test's source and never "^I".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from patchbot.testing.reports import FAILING, display_name, failure_excerpt, parse_junit, parse_tap

DATA = Path(__file__).parent / "data"

# What aurweb's t2500-notify.t #2 printed at v1 (its test_cmp is called as `test_cmp actual expected`).
RESET_KEY_DIFF = """\
--- actual
+++ expected
@@ -1,6 +1,5 @@
 A password reset request was submitted for the account user associated
-with your email address. If you wish to reset your password, follow
-the link [1] below; otherwise ignore this message and nothing will
-happen.
+with your email address. If you wish to reset your password follow the
+link [1] below, otherwise ignore this message and nothing will happen.

 [1] https://aur.archlinux.org/passreset/?resetkey=12345678901234567890123456789012"""


def failing(report):
    return [case for case in report.cases if case.outcome in FAILING]


def test_prove_junit_names_the_script_and_keeps_the_diff_printed_before_not_ok():
    report = parse_junit((DATA / "aurweb-2020-t2500-notify-v1-tip.junit.xml").read_bytes())
    [case] = failing(report)
    assert case.name == "t2500-notify.t::2 - Test subject and body of reset key notifications."
    assert display_name(case.name) == "t2500-notify.t #2: Test subject and body of reset key notifications."
    assert report.passed == 17 and report.cases[0].name == "t2500-notify.t::1 - Test out-of-date notifications."
    assert failure_excerpt(case.detail) == RESET_KEY_DIFF
    # prove's <failure> holds what came after `not ok 2`: the source, then test 3's; none of it is 2's output.
    assert "welcome" not in case.detail and "^I" not in case.detail


def test_plain_tap_of_a_verbose_script_gives_the_same_excerpt():
    report = parse_tap((DATA / "aurweb-2020-t2500-notify-v1-tip.tap").read_text())
    [case] = failing(report)
    assert case.name == "Test subject and body of reset key notifications."
    assert failure_excerpt(case.detail) == RESET_KEY_DIFF


def test_two_failures_in_a_row_each_keep_their_own_diff():
    [reset, welcome] = failing(parse_junit((DATA / "aurweb-2020-t2500-notify-v2-tip.junit.xml").read_bytes()))
    assert "reset your password" in failure_excerpt(reset.detail) and "Welcome" not in failure_excerpt(reset.detail)
    assert failure_excerpt(welcome.detail).splitlines()[3] == (
        "-Welcome to the AUR! In order to set an initial password for your new")


def test_without_v_sharness_gives_only_the_source_and_the_excerpt_is_empty():
    """The reply then says so (report.NO_OUTPUT) rather than quote the test's own code."""
    report = parse_junit((DATA / "aurweb-2020-t2500-notify-v1-tip-not-verbose.junit.xml").read_bytes())
    [case] = failing(report)
    assert "test_cmp actual expected" in case.detail  # the echoed source, tabs restored
    assert failure_excerpt(case.detail) == ""


def test_pytest_shows_the_assertion_and_where():
    [case] = failing(parse_junit((DATA / "aurweb-2021-test_util-tip.junit.xml").read_bytes()))
    assert display_name(case.name) == "test/test_util.py::test_to_qs"
    assert failure_excerpt(case.detail).splitlines() == [
        '>       assert qs == "a=b&c=1&c=2&c=3"',
        "E       AssertionError: assert 'a=b&c=%5B1%2C+2%2C+3%5D' == 'a=b&c=1&c=2&c=3'",
        "E         - a=b&c=1&c=2&c=3",
        "E         + a=b&c=%5B1%2C+2%2C+3%5D",
        "test/test_util.py:36: AssertionError",
    ]


@pytest.mark.parametrize("name, shown", [
    ("test.test_util::test_to_qs", "test/test_util.py::test_to_qs"),
    ("test.test_rpc.TestSearch::test_by_maintainer[php]", "test/test_rpc.py::TestSearch::test_by_maintainer[php]"),
    ("test.python.test_rpc::test_info", "test/python/test_rpc.py::test_info"),
    ("tests.rpc_test::test_info", "tests/rpc_test.py::test_info"),
    ("RpcTest::testMaintainer", "RpcTest::testMaintainer"),  # phpunit: a class, not a module
    ("t2500-notify.t::2 - Test subject.", "t2500-notify.t #2: Test subject."),
    ("t1300-git-update.t::12", "t1300-git-update.t #12"),
    ("t2500-notify.t::2 - same #2", "t2500-notify.t #2: same #2"),
    ("Test subject and body of reset key notifications.", "Test subject and body of reset key notifications."),
    ("test 3", "test 3"),
])
def test_display_names(name, shown):
    assert display_name(name) == shown


TEST_MORE = """
use Test::More;
is(1, 2, 'rpc search');
is_deeply([1], [2], 'parity');
done_testing;
"""


@pytest.mark.skipif(shutil.which("perl") is None, reason="needs perl")
def test_test_more_got_and_expected():
    run = subprocess.run(["perl", "-e", TEST_MORE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    [search, parity] = failing(parse_tap(run.stdout))
    lines = failure_excerpt(search.detail).splitlines()
    assert lines[0] == "#   Failed test 'rpc search'"
    assert "#          got: '1'" in lines and "#     expected: '2'" in lines
    assert "Structures begin differing" in failure_excerpt(parity.detail)


PROVE_SCRIPT = """#!/bin/sh
echo "1..1"
printf -- '--- expected\\n+++ actual\\n@@ -1 +1 @@\\n-caf\\303\\251\\tbar\\n+cafe\\tbar\\n'
echo "not ok 1 - accents survive"
"""


@pytest.mark.skipif(shutil.which("prove") is None or subprocess.run(
    ["perl", "-MTAP::Formatter::JUnit", "-e1"], capture_output=True).returncode != 0,
    reason="needs prove and TAP::Formatter::JUnit (libtap-formatter-junit-perl)")
def test_prove_junit_escapes_are_undone(tmp_path):
    """prove's formatter writes a tab as "^I" and a byte over 0x7e as "[\\xc3]": shown as written."""
    (tmp_path / "t0001-accents.t").write_text(PROVE_SCRIPT)
    run = subprocess.run(["prove", "-e", "sh", "--formatter", "TAP::Formatter::JUnit", "t0001-accents.t"],
                         cwd=tmp_path, capture_output=True)
    assert b"^I" in run.stdout and b"[\\xc3][\\xa9]" in run.stdout  # what the formatter wrote
    [case] = parse_junit(run.stdout).cases
    assert case.name == "t0001-accents.t::1 - accents survive"
    assert failure_excerpt(case.detail).splitlines()[3:] == ["-café   bar", "+cafe   bar"]
