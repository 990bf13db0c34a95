"""Reading JUnit XML and TAP reports: real tools' output, the formats' corners, hostile input."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from patchbot.testing import reports as testreports
from patchbot.testing.reports import MAX_DETAIL_CHARS, Outcome, ReportError, TestCase, parse_junit, parse_tap

PASS, FAIL, ERROR, SKIPPED = Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.SKIPPED


def outcomes(report):
    return [(case.name, case.outcome) for case in report.cases]


def case_named(report, name) -> TestCase:
    return next(case for case in report.cases if case.name == name)


# -- JUnit from the real tools ---------------------------------------------------------------

SAMPLE_PYTEST_FILE = '''
import pytest

@pytest.fixture
def database():
    raise RuntimeError("database fixture exploded")

def test_info():
    assert 1

def test_search():
    assert 1 == 2

@pytest.mark.skip(reason="needs PHP")
def test_parity():
    pass

def test_maintainer(database):
    pass

class TestSuggest:
    def test_prefix(self):
        pass
'''


def test_real_pytest_junitxml(tmp_path):
    (tmp_path / "test_rpc.py").write_text(SAMPLE_PYTEST_FILE)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=report.xml",
         "test_rpc.py"],
        cwd=tmp_path, env=env, capture_output=True, check=False,
    )
    report = parse_junit((tmp_path / "report.xml").read_bytes())
    assert outcomes(report) == [
        ("test_rpc::test_info", PASS),
        ("test_rpc::test_search", FAIL),
        ("test_rpc::test_parity", SKIPPED),
        ("test_rpc::test_maintainer", ERROR),
        ("test_rpc.TestSuggest::test_prefix", PASS),
    ]
    assert (report.passed, report.failed, report.skipped, report.total) == (2, 2, 1, 5)
    failure = case_named(report, "test_rpc::test_search")
    assert failure.message == "assert 1 == 2"
    assert "test_rpc.py:12: AssertionError" in failure.detail
    error = case_named(report, "test_rpc::test_maintainer")
    assert "database fixture exploded" in error.message
    assert 'raise RuntimeError("database fixture exploded")' in error.detail
    assert case_named(report, "test_rpc::test_parity").message == "needs PHP"


# -- JUnit samples in the shapes pytest and phpunit write --------------------------------------

PYTEST_JUNIT = b"""<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" \
errors="0" failures="1" skipped="0" tests="2" time="0.05" timestamp="2024-05-02T10:11:12.000000+00:00" \
hostname="ci"><testcase classname="test.python.test_rpc" name="test_info" time="0.01"><failure message="assert \
1 == 2">def test_info():
&gt;       assert 1 == 2
E       assert 1 == 2

test/python/test_rpc.py:5: AssertionError</failure></testcase><testcase classname="test.python.test_rpc" \
name="test_search" time="0.002" /></testsuite></testsuites>"""

# phpunit 9 (Debian's) --log-junit: a suite per configured test suite, per class, per data provider.
PHPUNIT_JUNIT = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="" tests="5" assertions="4" errors="1" warnings="0" failures="1" skipped="1" time="0.021">
    <testsuite name="Unit" tests="5" assertions="4" errors="1" warnings="0" failures="1" skipped="1" time="0.021">
      <testsuite name="RpcTest" file="/src/test/php/RpcTest.php" tests="5" assertions="4" errors="1" warnings="0" \
failures="1" skipped="1" time="0.021">
        <testcase name="testInfo" class="RpcTest" classname="RpcTest" file="/src/test/php/RpcTest.php" line="12" \
assertions="1" time="0.003"/>
        <testcase name="testSearch" class="RpcTest" classname="RpcTest" file="/src/test/php/RpcTest.php" line="20" \
assertions="1" time="0.004">
          <failure type="PHPUnit\\Framework\\ExpectationFailedException">RpcTest::testSearch
Failed asserting that 1 matches expected 2.

/src/test/php/RpcTest.php:23</failure>
        </testcase>
        <testcase name="testMaintainer" class="RpcTest" classname="RpcTest" file="/src/test/php/RpcTest.php" \
line="30" assertions="0" time="0.001">
          <error type="PDOException">RpcTest::testMaintainer
PDOException: SQLSTATE[HY000]: no such table: Users

/src/web/lib/aurjson.class.php:88
/src/test/php/RpcTest.php:32</error>
        </testcase>
        <testcase name="testParity" class="RpcTest" classname="RpcTest" file="/src/test/php/RpcTest.php" line="40" \
assertions="0" time="0.000">
          <skipped/>
        </testcase>
        <testsuite name="RpcTest::testType" tests="1" assertions="2" errors="0" warnings="0" failures="0" \
skipped="0" time="0.013">
          <testcase name="testType with data set #0" class="RpcTest" classname="RpcTest" \
file="/src/test/php/RpcTest.php" line="50" assertions="2" time="0.013"/>
        </testsuite>
      </testsuite>
    </testsuite>
  </testsuite>
</testsuites>
"""

BARE_TESTSUITE = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="parity" tests="2" failures="1">
  <testcase classname="parity" name="rpc_info"/>
  <testcase classname="parity" name="rpc_search"><failure message="responses differ">-php
+python</failure></testcase>
</testsuite>
"""


def test_pytest_sample_names_cases_by_module_and_function():
    report = parse_junit(PYTEST_JUNIT)
    assert outcomes(report) == [
        ("test.python.test_rpc::test_info", FAIL),
        ("test.python.test_rpc::test_search", PASS),
    ]
    assert report.cases[0].message == "assert 1 == 2"
    assert report.cases[0].detail.endswith("test/python/test_rpc.py:5: AssertionError")
    assert report.cases[1].message == report.cases[1].detail == ""


def test_phpunit_sample_with_nested_suites_and_a_data_provider():
    report = parse_junit(PHPUNIT_JUNIT)
    assert outcomes(report) == [
        ("RpcTest::testInfo", PASS),
        ("RpcTest::testSearch", FAIL),
        ("RpcTest::testMaintainer", ERROR),
        ("RpcTest::testParity", SKIPPED),
        ("RpcTest::testType with data set #0", PASS),
    ]


def test_phpunit_message_is_the_line_after_the_test_id():
    report = parse_junit(PHPUNIT_JUNIT)
    assert case_named(report, "RpcTest::testSearch").message == "Failed asserting that 1 matches expected 2."
    assert case_named(report, "RpcTest::testMaintainer").message.startswith("PDOException: SQLSTATE[HY000]")
    assert case_named(report, "RpcTest::testMaintainer").detail.endswith("/src/test/php/RpcTest.php:32")


def test_bare_testsuite_root():
    report = parse_junit(BARE_TESTSUITE)
    assert outcomes(report) == [("parity::rpc_info", PASS), ("parity::rpc_search", FAIL)]
    assert report.cases[1].detail == "-php\n+python"


def test_duplicate_names_get_a_number():
    data = b'<testsuite><testcase classname="a" name="t"/><testcase classname="a" name="t"><error/></testcase>'
    data += b"</testsuite>"
    assert outcomes(parse_junit(data)) == [("a::t", PASS), ("a::t #2", ERROR)]


def test_a_case_without_classname_is_named_by_its_name():
    # pytest reports a module that fails to import this way.
    data = (
        b'<testsuites><testsuite><testcase classname="" name="test.python.test_rpc">'
        b'<error message="collection failure">ImportError</error></testcase></testsuite></testsuites>'
    )
    assert outcomes(parse_junit(data)) == [("test.python.test_rpc", ERROR)]


def test_a_well_formed_report_with_no_tests_is_empty():
    data = b'<testsuites><testsuite name="pytest" tests="0"/></testsuites>'
    assert parse_junit(data).total == 0


def test_long_failure_text_keeps_its_end():
    text = "x" * 10_000 + "\nthe cause"
    data = f'<testsuite><testcase name="t"><failure>{text}</failure></testcase></testsuite>'.encode()
    detail = parse_junit(data).cases[0].detail
    assert detail.startswith("[... ") and detail.endswith("the cause")
    assert len(detail) < MAX_DETAIL_CHARS + 50


# -- JUnit that must be refused ----------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<testsuite><testcase name="t"><failure>&lol4;</failure></testcase></testsuite>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY secret SYSTEM "file:///etc/patchbot/config.toml">]>
<testsuite><testcase name="t"><failure>&secret;</failure></testcase></testsuite>
"""


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(BILLION_LAUGHS, id="entity-bomb"),
        pytest.param(EXTERNAL_ENTITY, id="external-entity"),
        pytest.param(PYTEST_JUNIT[: len(PYTEST_JUNIT) // 2], id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"  \n", id="blank"),
        pytest.param(b"<html><body>502 Bad Gateway</body></html>", id="not-junit"),
        pytest.param(b"Traceback (most recent call last):\n", id="not-xml"),
        pytest.param(BARE_TESTSUITE.replace(b"UTF-8", b"UTF-16").decode().encode("utf-16"), id="utf-16"),
        pytest.param(b"<testsuite><testcase name='\xff'/></testsuite>", id="not-utf-8"),
        pytest.param(BARE_TESTSUITE.decode().encode("utf-16-le"), id="utf-16-without-bom"),
    ],
)
def test_refused_junit(data):
    with pytest.raises(ReportError):
        parse_junit(data)


def test_too_many_cases_is_refused(monkeypatch):
    monkeypatch.setattr(testreports, "MAX_CASES", 3)
    data = b"<testsuite>" + b'<testcase name="t"/>' * 4 + b"</testsuite>"
    with pytest.raises(ReportError, match="more than 3"):
        parse_junit(data)


# -- TAP from the real tool ------------------------------------------------------------------

TEST_MORE_SCRIPT = """
use Test::More;
ok(1, 'rpc info');
is(1, 2, 'rpc search');
SKIP: { skip 'no database', 1; ok(1, 'maintainer') }
TODO: { local $TODO = 'not ported yet'; ok(0, 'suggest') }
is_deeply([1], [2], 'parity');
done_testing;
"""


@pytest.mark.skipif(shutil.which("perl") is None, reason="needs perl")
def test_real_test_more_output():
    # The executor captures stdout and stderr together; Test::More prints diagnostics to stderr.
    run = subprocess.run(
        ["perl", "-e", TEST_MORE_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    report = parse_tap(run.stdout)
    assert outcomes(report) == [
        ("rpc info", PASS),
        ("rpc search", FAIL),
        ("test 3", SKIPPED),
        ("suggest", SKIPPED),
        ("parity", FAIL),
    ]
    search = case_named(report, "rpc search")
    assert search.message == "Failed test 'rpc search'"
    assert "expected: '2'" in search.detail
    assert "Structures begin differing" in case_named(report, "parity").detail
    assert case_named(report, "test 3").message == "SKIP: no database"
    assert case_named(report, "suggest").message == "TODO: not ported yet"


# -- TAP corners -------------------------------------------------------------------------------

def tap(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


TAP_TABLE = [
    pytest.param(
        tap("""
            TAP version 13
            1..3
            ok 1 - rpc info
            not ok 2 - rpc search
              ---
              message: 'got 0 results, expected 1'
              severity: fail
              ...
            ok 3 - rpc suggest
        """),
        [("rpc info", PASS), ("rpc search", FAIL), ("rpc suggest", PASS)],
        id="yaml-block",
    ),
    pytest.param(
        tap("""
            ok 1 - maintainer # SKIP no database
            not ok 2 - suggest # TODO not ported yet
            ok 3 - parity # todo unexpectedly fixed
            1..3
        """),
        [("maintainer", SKIPPED), ("suggest", SKIPPED), ("parity", PASS)],
        id="skip-todo-plan-at-end",
    ),
    pytest.param(
        tap("""
            1..4
            ok 1 - rpc info
            Bail out! Could not connect to the database
            ok 2 - never read
        """),
        [("rpc info", PASS), ("bail out", ERROR)],
        id="bail-out",
    ),
    pytest.param(
        tap("""
            1..4
            ok 1 - rpc info
            ok 3 - rpc suggest
        """),
        [("rpc info", PASS), ("rpc suggest", PASS), ("test 2", ERROR), ("test 4", ERROR)],
        id="plan-announces-more",
    ),
    pytest.param(
        tap("""
            1..1
            ok 1 - rpc info
            ok 2 - rpc search
        """),
        [("rpc info", PASS), ("rpc search", PASS), ("plan", ERROR)],
        id="plan-announces-fewer",
    ),
    pytest.param(
        tap("""
            ok 1 - rpc info
            ok 2 - rpc search
        """),
        [("rpc info", PASS), ("rpc search", PASS), ("plan", ERROR)],
        id="no-plan",
    ),
    pytest.param("1..0 # SKIP php-sqlite3 is not installed\n", [("skip all", SKIPPED)], id="skip-all"),
    pytest.param(
        tap("""
            Running test/t1100_rpc.sh with PHP 8.2
            1..2
            ok 1 - rpc info
            PHP Warning:  Undefined variable $x in /src/web/lib/aurjson.class.php on line 3
            ok 2
        """),
        [("rpc info", PASS), ("test 2", PASS)],
        id="mixed-with-other-output",
    ),
    pytest.param(
        tap("""
            1..2
            # Subtest: search
                ok 1 - by name
                not ok 2 - by maintainer
                1..2
            not ok 1 - search
            ok 2 - info
        """),
        [("search", FAIL), ("info", PASS)],
        id="subtests-ignored",
    ),
    pytest.param(
        tap("""
            1..3
            ok - first
            ok - same
            ok - same
        """),
        [("first", PASS), ("same", PASS), ("same #2", PASS)],
        id="unnumbered-and-duplicates",
    ),
    pytest.param("1..1\nok 1 - issue \\#42 is fixed\n", [("issue #42 is fixed", PASS)], id="escaped-hash"),
]


@pytest.mark.parametrize(("text", "expected"), TAP_TABLE)
def test_tap(text, expected):
    assert outcomes(parse_tap(text)) == expected


def test_tap_yaml_block_is_the_failure_detail():
    report = parse_tap(TAP_TABLE[0].values[0])
    search = case_named(report, "rpc search")
    assert search.message == "message: 'got 0 results, expected 1'"
    assert search.detail == "  ---\n  message: 'got 0 results, expected 1'\n  severity: fail\n  ..."


def test_tap_comments_after_a_failure_are_its_detail_until_the_next_test():
    # sharness, which aurweb's shell tests use, prints the failing command this way.
    report = parse_tap("not ok 1 - rpc search\n#\ttest_cmp expected actual\nok 2 - info\n# passed\n1..2\n")
    assert report.cases[0].detail == "#\ttest_cmp expected actual"
    assert report.cases[1].detail == ""


def test_tap_bail_out_reason_is_the_message():
    report = parse_tap("1..2\nBail out! Could not connect to the database\n")
    assert case_named(report, "bail out").message == "Could not connect to the database"


def test_tap_missing_test_says_what_the_plan_announced():
    report = parse_tap("1..2\nok 1\n")
    assert case_named(report, "test 2").message == "missing: the plan announced 2 tests"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("PHP Fatal error:  Uncaught Error: Class not found\n", id="no-tap"),
        pytest.param("# only a comment\n", id="only-comments"),
    ],
)
def test_refused_tap(text):
    with pytest.raises(ReportError):
        parse_tap(text)


def test_a_huge_line_without_a_directive_is_read_in_linear_time():
    # A description regex with a lazy group backtracked for minutes on such a line.
    report = parse_tap("ok 1 " + " x" * 500_000 + "\\\n1..1\n")
    assert report.cases[0].outcome is PASS


def test_tap_plan_beyond_the_case_limit_is_refused():
    with pytest.raises(ReportError):
        parse_tap("1..999999999\n")


# -- caps: counts stay exact, text is bounded ------------------------------------------------


def test_only_the_first_failures_keep_their_text(monkeypatch):
    monkeypatch.setattr(testreports, "MAX_DETAILED_FAILURES", 2)
    data = b"<testsuite>" + b'<testcase name="t"><failure message="why">trace</failure></testcase>' * 3 + b"</testsuite>"
    report = parse_junit(data)
    assert report.failed == 3
    assert [case.detail for case in report.cases] == ["trace", "trace", ""]
    assert all(case.message == "why" for case in report.cases)


def test_junit_read_from_an_open_file_is_read_as_from_bytes(tmp_path):
    (tmp_path / "report.xml").write_bytes(PHPUNIT_JUNIT)
    with (tmp_path / "report.xml").open("rb") as report:
        assert parse_junit(report) == parse_junit(PHPUNIT_JUNIT)


def test_a_failure_text_in_many_pieces_keeps_its_end_and_says_how_much_was_cut():
    text = "".join(f"line {n}\n" for n in range(100_000)) + "the cause"
    data = f'<testsuite><testcase name="t"><failure>{text}</failure></testcase></testsuite>'.encode()
    detail = parse_junit(data).cases[0].detail
    cut = int(detail.split(" ", 2)[1])
    assert detail.endswith("the cause") and cut + len(detail.split("\n", 1)[1]) == len(text)


def test_tap_diagnostics_keep_their_last_lines():
    diagnostics = "".join(f"# line {n}\n" for n in range(10_000))
    case = parse_tap(f"1..1\nnot ok 1 - search\n# first\n{diagnostics}").cases[0]
    assert case.message == "first"
    assert case.detail.endswith("# line 9999") and "# line 100\n" not in case.detail
    assert len(case.detail) <= MAX_DETAIL_CHARS + 50


def test_names_and_messages_are_one_printable_line():
    data = ('<testsuite><testcase classname="a&#10;b" name="c&#13;&#10;d&#x202E;">'
            '<failure message="x&#133;y&#10;z">t</failure></testcase></testsuite>').encode()
    case = parse_junit(data).cases[0]
    assert (case.name, case.message) == ("a b::c d\\u202e", "x y")  # the message: its first line
