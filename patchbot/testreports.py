"""Read a suite's test report (JUnit XML or TAP) into per-test outcomes.

Reports are written by code from a patch, inside the sandbox: they are untrusted input. A
report that cannot be read raises `ReportError`, and the caller marks the suite as a failure
of the machinery rather than of the patch. Sizes are capped so that a hostile report costs
bounded memory: no DTDs (so no entity expansion), at most `MAX_CASES` cases, capped fields.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_CASES = 100_000
MAX_NAME_CHARS = 1_000
MAX_MESSAGE_CHARS = 1_000
MAX_DETAIL_CHARS = 4_000


class Outcome(Enum):
    """One vocabulary for tests and suites; INFRA_ERROR and TIMEOUT are the machine's, not the patch's."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"
    TIMEOUT = "timeout"
    INFRA_ERROR = "infra-error"


FAILING = frozenset({Outcome.FAIL, Outcome.ERROR})


@dataclass(frozen=True)
class TestCase:
    """One test's outcome (PASS, FAIL, ERROR or SKIPPED) under a name stable across runs."""

    __test__ = False  # not a pytest test class, despite the name

    name: str  # JUnit "classname::name", TAP the description or "test N"; repeats get " #2"
    outcome: Outcome
    message: str  # one line: why it failed or was skipped; '' when passed
    detail: str  # the failure text (traceback, assertion, diagnostics), its last MAX_DETAIL_CHARS


@dataclass(frozen=True)
class TestReport:
    """Every case of one run, in report order."""

    __test__ = False

    cases: tuple[TestCase, ...]

    @property
    def passed(self) -> int:
        return self._count({Outcome.PASS})

    @property
    def failed(self) -> int:
        return self._count(FAILING)

    @property
    def skipped(self) -> int:
        return self._count({Outcome.SKIPPED})

    @property
    def total(self) -> int:
        return len(self.cases)

    def _count(self, outcomes: set[Outcome] | frozenset[Outcome]) -> int:
        return sum(case.outcome in outcomes for case in self.cases)


class ReportError(Exception):
    """The report is missing, empty, malformed or refused: the suite's result is unknown."""


# -- shared by both formats ------------------------------------------------------------------


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:MAX_MESSAGE_CHARS]


def _cap_detail(text: str) -> str:
    """Keep the end of a long failure text: tracebacks and diagnostics end with the cause."""
    text = text.strip("\n")
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return f"[... {len(text) - MAX_DETAIL_CHARS} characters cut]\n" + text[-MAX_DETAIL_CHARS:]


def _build_report(cases: list[TestCase]) -> TestReport:
    """Give repeated names a " #2", " #3" suffix so that every name identifies one case."""
    seen: dict[str, int] = {}
    unique = []
    for case in cases:
        seen[case.name] = seen.get(case.name, 0) + 1
        if seen[case.name] > 1:
            case = TestCase(f"{case.name} #{seen[case.name]}", case.outcome, case.message, case.detail)
        unique.append(case)
    return TestReport(tuple(unique))


def report_from_cases(cases: Sequence[tuple[str, Outcome, str]]) -> TestReport:
    """A report that arrives as data (GitLab's test report API): (name, outcome, failure text)."""
    _check_case_count(len(cases))
    return _build_report([
        TestCase(name[:MAX_NAME_CHARS], outcome, _first_line(text) if outcome in FAILING else "",
                 _cap_detail(text) if outcome in FAILING else "")
        for name, outcome, text in cases
    ])


def _check_case_count(count: int) -> None:
    if count > MAX_CASES:
        raise ReportError(f"more than {MAX_CASES} test cases")


# -- JUnit XML -------------------------------------------------------------------------------

_DTD_DECLARATION = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)

# The first of these children present, in this order, decides; a case with none of them passed.
_JUNIT_RESULT_ELEMENTS = (("error", Outcome.ERROR), ("failure", Outcome.FAIL), ("skipped", Outcome.SKIPPED))


def parse_junit(data: bytes) -> TestReport:
    """Read JUnit XML as pytest (--junitxml) and phpunit (--log-junit) write it, suites nested or not."""
    root = _parse_untrusted_xml(data)
    if root.tag not in ("testsuites", "testsuite"):
        raise ReportError(f"not a JUnit report: the root element is <{root.tag[:100]}>")
    elements = list(root.iter("testcase"))
    _check_case_count(len(elements))
    return _build_report([_junit_case(element) for element in elements])


def _parse_untrusted_xml(data: bytes) -> ET.Element:
    """Parse UTF-8 XML without a DTD: entity declarations are how XML bombs and external reads work."""
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"the report is larger than {MAX_REPORT_BYTES} bytes")
    if not data.strip():
        raise ReportError("the report is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReportError(f"the report is not UTF-8: {error}") from None
    # A NUL means UTF-16/32 without a BOM, which expat would decode past the check below.
    if "\x00" in text:
        raise ReportError("the report contains NUL bytes")
    if _DTD_DECLARATION.search(text):
        raise ReportError("the report declares a DTD or entities; refused")
    parser = ET.XMLParser(encoding="utf-8")  # overrides any encoding the document declares
    try:
        parser.feed(data)
        return parser.close()
    except ET.ParseError as error:
        raise ReportError(f"malformed XML: {error}") from None


def _junit_case(element: ET.Element) -> TestCase:
    name = _junit_name(element)
    for tag, outcome in _JUNIT_RESULT_ELEMENTS:
        result = element.find(tag)
        if result is not None:
            message = _junit_message(result, element.get("name", ""))
            detail = _cap_detail(result.text or "") if outcome in FAILING else ""
            return TestCase(name, outcome, message, detail)
    return TestCase(name, Outcome.PASS, "", "")


def _junit_name(element: ET.Element) -> str:
    """Name a case "classname::name"; pytest's classname is the module path ("test.python.test_rpc")."""
    classname = element.get("classname") or element.get("class") or ""
    name = element.get("name", "")
    return (f"{classname}::{name}" if classname else name)[:MAX_NAME_CHARS]


def _junit_message(result: ET.Element, test_name: str) -> str:
    """The message attribute (pytest), else the text's first line past the test id (phpunit)."""
    if result.get("message"):
        return _first_line(result.get("message", ""))
    lines = (result.text or "").strip().splitlines()
    if lines and f"::{test_name}" in lines[0]:
        lines = lines[1:]
    return _first_line("\n".join(lines))


# -- TAP -------------------------------------------------------------------------------------

_TAP_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(.*))?$")
_TAP_TEST = re.compile(r"^(not )?ok\b\s*(\d*)(.*)$")
_UNESCAPED_HASH = re.compile(r"(?<!\\)#")  # splits the description from a directive, in linear time
_TAP_DIRECTIVE = re.compile(r"^(skip|todo)\S*\s*(.*)$", re.IGNORECASE)
_TAP_BAIL_OUT = re.compile(r"^Bail out!\s*(.*)$")
_YAML_START = re.compile(r"^\s+---\s*$")
_YAML_END = re.compile(r"^\s+\.\.\.\s*$")


@dataclass
class _TapTest:
    """A test line as read; diagnostics that follow a failure are added to `detail_lines`."""

    number: int
    name: str
    outcome: Outcome
    message: str
    detail_lines: list[str] = field(default_factory=list)

    def to_case(self) -> TestCase:
        detail = _cap_detail("\n".join(self.detail_lines))
        return TestCase(self.name, self.outcome, self.message or self._diagnostic_message(), detail)

    def _diagnostic_message(self) -> str:
        """The first diagnostic line, without its "#" or the YAML start marker."""
        lines = (line.lstrip("#").strip() for line in self.detail_lines)
        return _first_line("\n".join(line for line in lines if line != "---"))


def parse_tap(text: str) -> TestReport:
    """Read a TAP 12/13 stream (Test::More, prove, PHP scripts); lines that are not TAP are ignored.

    Only top-level lines count (subtests are indented). `ok # TODO` passes; `not ok # TODO` is
    counted as skipped, as prove does not fail on it. Diagnostics (YAML blocks and `#` lines)
    after a failing test become its detail. "Bail out!" adds an ERROR case "bail out"; tests the
    plan announced but the stream lacks become ERROR cases "test N"; a missing or exceeded plan
    adds an ERROR case "plan".
    """
    stream = _TapStream()
    for line in text.splitlines():
        if not stream.read(line.rstrip()):
            break
    return stream.report()


@dataclass
class _TapStream:
    """What has been read of a TAP stream so far."""

    tests: list[_TapTest] = field(default_factory=list)
    plan: int | None = None
    skip_all_reason: str | None = None
    bail_out: str | None = None
    collecting: _TapTest | None = None  # the last test if it failed: it takes the diagnostics
    in_yaml: bool = False

    def read(self, line: str) -> bool:
        """Take one line; False after "Bail out!", when the rest is not to be read."""
        if self.in_yaml or (_YAML_START.match(line) and self.tests):
            self.in_yaml = not _YAML_END.match(line)
            self._add_diagnostic(line)
        elif match := _TAP_TEST.match(line):
            self._add_test(_tap_test(match, len(self.tests) + 1))
        elif match := _TAP_PLAN.match(line):
            self._set_plan(int(match.group(1)), match.group(2))
        elif match := _TAP_BAIL_OUT.match(line):
            self.bail_out = match.group(1)
            return False
        elif line.startswith("#"):
            self._add_diagnostic(line)
        return True

    def report(self) -> TestReport:
        if not self.tests and self.plan is None and self.bail_out is None:
            raise ReportError("no TAP found in the output")
        cases = [test.to_case() for test in self.tests]
        if self.skip_all_reason is not None:
            cases.append(TestCase("skip all", Outcome.SKIPPED, self.skip_all_reason, ""))
        cases.extend(self._plan_problems())
        return _build_report(cases)

    def _add_test(self, test: _TapTest) -> None:
        self.tests.append(test)
        _check_case_count(len(self.tests))
        self.collecting = test if test.outcome in FAILING else None

    def _add_diagnostic(self, line: str) -> None:
        if self.collecting is not None:
            self.collecting.detail_lines.append(line)

    def _set_plan(self, plan: int, comment: str | None) -> None:
        _check_case_count(plan)
        self.plan, self.collecting = plan, None
        directive = _TAP_DIRECTIVE.match(comment or "")
        if plan == 0 and directive and directive.group(1).upper() == "SKIP":  # `1..0 # SKIP reason`
            self.skip_all_reason = directive.group(2)

    def _plan_problems(self) -> list[TestCase]:
        """ERROR cases for a bail out, tests the plan announced but never ran, a wrong or absent plan."""
        if self.bail_out is not None:
            return [TestCase("bail out", Outcome.ERROR, self.bail_out[:MAX_MESSAGE_CHARS], "")]
        if self.plan is None:
            return [TestCase("plan", Outcome.ERROR, "no plan: the test script stopped early", "")]
        numbers = {test.number for test in self.tests}
        problems = [
            TestCase(f"test {number}", Outcome.ERROR, f"missing: the plan announced {self.plan} tests", "")
            for number in range(1, self.plan + 1)
            if number not in numbers
        ]
        if len(self.tests) > self.plan:
            message = f"ran {len(self.tests)} tests but the plan announced {self.plan}"
            problems.append(TestCase("plan", Outcome.ERROR, message, ""))
        return problems


def _tap_test(match: re.Match[str], position: int) -> _TapTest:
    failed, number, rest = match.groups()
    number = int(number) if number else position
    description, *directive_text = _UNESCAPED_HASH.split(rest, maxsplit=1)
    description = description.strip().removeprefix("-").strip().replace("\\#", "#")
    name = (description or f"test {number}")[:MAX_NAME_CHARS]
    directive = _TAP_DIRECTIVE.match(directive_text[0].strip() if directive_text else "")
    if directive:
        kind, reason = directive.group(1).upper(), directive.group(2)
        if kind == "SKIP" or failed:
            return _TapTest(number, name, Outcome.SKIPPED, f"{kind}: {reason}" if reason else kind)
    return _TapTest(number, name, Outcome.FAIL if failed else Outcome.PASS, "")
