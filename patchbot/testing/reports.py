"""Read a suite's test report (JUnit XML or TAP) into per-test outcomes.

Why this is long: two report grammars (JUnit XML and TAP) into one TestReport, each with the
bounds a hostile report needs (cases, bytes, depth); they share the case model and the limits,
and a new format is one more parser here.

Reports are written by code from a patch, inside the sandbox: they are untrusted input. A
report that cannot be read raises `ReportError`, and the caller marks the suite as a failure
of the machinery rather than of the patch. A hostile report costs bounded memory and cannot
put text anywhere it is shown (issue 11 item 8: a 64 MB JUnit file of tiny elements cost the
bot 1.6 GB; names with `&#10;` wrote lines of their own into a reply):

- JUnit is read as a stream (expat fed 64 KiB at a time, each case dropped once read), never
  as a tree; at most MAX_REPORT_BYTES are read, MAX_ELEMENTS elements (each costs a call into
  Python: 16 million tiny ones took a minute), nested at most MAX_DEPTH deep;
- no DTD at all: entity declarations are how XML bombs (billion laughs, which expat would
  expand) and external reads work, and JUnit writers never emit one;
- counts stay exact, details are capped: names and messages are one line (`safe_text.one_line`)
  of at most MAX_NAME_CHARS / MAX_MESSAGE_CHARS, a failure's text keeps its last
  MAX_DETAIL_CHARS, and only the first MAX_DETAILED_FAILURES failing cases keep their text;
- more than MAX_CASES cases is refused, as soon as the case past it is read: the names are what
  base and tip are compared by, and a report cut short could hide a failure.

A failure's detail is what shows the failing comparison (issue 13): for a TAP script the output
it printed before its `not ok` line (sharness run with -v prints test_cmp's diff there) and the
diagnostics after it (Test::More's `#   got:`/`#   expected:`); for pytest its traceback.
`failure_excerpt` picks the lines a reader needs from it, `display_name` names a test as a
reader would type it (`t2500-notify.t #2: ...`, `test/test_util.py::test_to_qs`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import BinaryIO
from xml.parsers import expat

from patchbot.text.safe_text import one_line, printable

MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_CASES = 100_000
MAX_DEPTH = 64
MAX_ELEMENTS = 2_000_000  # 20 per case at MAX_CASES: properties, system-out, system-err, ...
MAX_NAME_CHARS = 1_000
MAX_MESSAGE_CHARS = 1_000
MAX_DETAIL_CHARS = 4_000
MAX_DETAIL_LINES = 200  # of TAP diagnostics after one failing test
MAX_DETAILED_FAILURES = 1_000  # failing cases past these keep their one-line message only
_CHUNK_BYTES = 64 * 1024


class Outcome(Enum):
    """One vocabulary for tests and suites; INFRA_ERROR and TIMEOUT are the machine's, not the patch's."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"
    TIMEOUT = "timeout"
    INFRA_ERROR = "infra-error"


FAILING = frozenset({Outcome.FAIL, Outcome.ERROR})

# How the readers name tests. Base results kept under older names would make every failure at a
# tip look new, so it is part of the key they are kept under (testrun.suite_key). 2: prove's
# JUnit cases carry their script ("t2500-notify.t::2 - ...", issue 13).
NAMES_VERSION = 2


@dataclass(frozen=True)
class TestCase:
    """One test's outcome (PASS, FAIL, ERROR or SKIPPED) under a name stable across runs."""

    __test__ = False  # not a pytest test class, despite the name

    name: str  # JUnit "classname::name", TAP the description or "test N"; repeats get " #2"; one line
    outcome: Outcome
    message: str  # one line: why it failed or was skipped; '' when passed
    detail: str  # the failure text (traceback, assertion, diagnostics), its last MAX_DETAIL_CHARS, printable


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

_FIRST_TEXT_LINE = re.compile(r"\S[^\n]*")


def _first_line(text: str) -> str:
    """The first line with text, made one safe line."""
    found = _FIRST_TEXT_LINE.search(text[: MAX_MESSAGE_CHARS * 4])
    return one_line(found.group(), MAX_MESSAGE_CHARS) if found else ""


def _name(text: str) -> str:
    return one_line(text, MAX_NAME_CHARS)


def _cap_detail(text: str, cut: int = 0) -> str:
    """Keep the end of a long failure text: tracebacks and diagnostics end with the cause.
    `cut` counts characters already dropped from its start."""
    text = printable(text.strip("\n"))
    if len(text) > MAX_DETAIL_CHARS:
        cut, text = cut + len(text) - MAX_DETAIL_CHARS, text[-MAX_DETAIL_CHARS:]
    return f"[... {cut} characters cut]\n{text}" if cut else text


def _build_report(cases: list[TestCase]) -> TestReport:
    """Give repeated names a " #2", " #3" suffix so that every name identifies one case, and
    drop the text of failures past the first MAX_DETAILED_FAILURES."""
    seen: dict[str, int] = {}
    unique = []
    failures = 0
    for case in cases:
        seen[case.name] = seen.get(case.name, 0) + 1
        if seen[case.name] > 1:
            case = TestCase(f"{case.name} #{seen[case.name]}", case.outcome, case.message, case.detail)
        if case.outcome in FAILING:
            failures += 1
            if failures > MAX_DETAILED_FAILURES and case.detail:
                case = TestCase(case.name, case.outcome, case.message, "")
        unique.append(case)
    return TestReport(tuple(unique))


def report_from_cases(cases: Sequence[tuple[str, Outcome, str]]) -> TestReport:
    """A report that arrives as data (GitLab's test report API): (name, outcome, failure text)."""
    _check_case_count(len(cases))
    return _build_report([
        TestCase(_name(name), outcome, _first_line(text) if outcome in FAILING else "",
                 _cap_detail(text) if outcome in FAILING else "")
        for name, outcome, text in cases
    ])


def _check_case_count(count: int) -> None:
    if count > MAX_CASES:
        raise ReportError(f"more than {MAX_CASES} test cases")


# -- JUnit XML -------------------------------------------------------------------------------

# The first of these children present, in this order, decides; a case with none of them passed.
_JUNIT_RESULT_ELEMENTS = (("error", Outcome.ERROR), ("failure", Outcome.FAIL), ("skipped", Outcome.SKIPPED))
_RESULT_TAGS = frozenset(tag for tag, _ in _JUNIT_RESULT_ELEMENTS)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def parse_junit(source: bytes | BinaryIO) -> TestReport:
    """Read JUnit XML as pytest (--junitxml) and phpunit (--log-junit) write it, suites nested or not.

    `source` is the report's bytes or a file open for reading in binary mode; either way it is
    parsed as a stream, in UTF-8 whatever the document declares.
    """
    parser = expat.ParserCreate(encoding="utf-8")
    reader = _JunitReader(parser)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd  # unreachable without a DOCTYPE; kept as a second lock
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = reader.start_root
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    parser.buffer_text = True  # one call per run of text rather than per line
    size, blank = 0, True
    try:
        for chunk in _chunks(source):
            if size == 0 and chunk.startswith(_UTF16_BOMS):
                raise ReportError("the report is not UTF-8: it starts with a UTF-16 byte order mark")
            # XML never contains NUL; it means UTF-16/32, which expat would decode despite the
            # encoding given above.
            if b"\x00" in chunk:
                raise ReportError("the report contains NUL bytes")
            size += len(chunk)
            if size > MAX_REPORT_BYTES:
                raise ReportError(f"the report is larger than {MAX_REPORT_BYTES} bytes")
            blank = blank and not chunk.strip()
            if not blank:
                parser.Parse(chunk, False)
        if blank:
            raise ReportError("the report is empty")
        parser.Parse(b"", True)
    except expat.ExpatError as error:
        raise ReportError(f"malformed XML: {expat.ErrorString(error.code)}: line {error.lineno}, "
                          f"column {error.offset}") from None
    return reader.report()


def _chunks(source: bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for start in range(0, len(view), _CHUNK_BYTES):
            yield bytes(view[start:start + _CHUNK_BYTES])
        return
    while chunk := source.read(_CHUNK_BYTES):
        yield chunk


def _refuse_dtd(*_) -> None:
    raise ReportError("the report declares a DTD or entities; refused")


@dataclass
class _ResultRead:
    """An <error>, <failure> or <skipped> element of the case being read."""

    message: str  # its message attribute, one line
    text: _TextTail


@dataclass
class _CaseBeingRead:
    """A <testcase> between its start and end tags: its name and the result elements in it."""

    name: str
    short_name: str  # the name attribute alone, which phpunit repeats on a failure's first line
    depth: int
    results: dict[str, _ResultRead] = field(default_factory=dict)
    open_result: _ResultRead | None = None  # the result element being read, whose text is kept

    def to_case(self) -> TestCase:
        for tag, outcome in _JUNIT_RESULT_ELEMENTS:
            result = self.results.get(tag)
            if result is not None:
                message = result.message or _message_from_text(result.text.head, self.short_name)
                detail = _cap_detail(result.text.tail(), result.text.cut) if outcome in FAILING else ""
                return TestCase(self.name, outcome, message, detail)
        return TestCase(self.name, Outcome.PASS, "", "")


class _TextTail:
    """The first and the last few thousand characters of a text arriving in pieces."""

    def __init__(self) -> None:
        self.head = ""
        self.pieces: deque[str] = deque()
        self.size = 0
        self.cut = 0

    def add(self, piece: str) -> None:
        if len(self.head) < MAX_MESSAGE_CHARS * 2:
            self.head += piece[: MAX_MESSAGE_CHARS * 2 - len(self.head)]
        self.pieces.append(piece)
        self.size += len(piece)
        if self.size > 2 * MAX_DETAIL_CHARS:
            kept = "".join(self.pieces)[-MAX_DETAIL_CHARS:]
            self.cut += self.size - len(kept)
            self.pieces, self.size = deque([kept]), len(kept)

    def tail(self) -> str:
        return "".join(self.pieces)


# prove's TAP::Formatter::JUnit (aurweb's sharness suite) names a <testsuite> after its script,
# every character outside [-:_A-Za-z0-9] made "_" (t2500-notify.t: "t2500-notify_t"), and its
# cases "N - description", with no classname. It writes a control character as ^ and a letter
# (a tab: "^I") and a byte over 0x7e as "[\\xc3]": undone where the text is read.
_PROVE_SUITE = re.compile(r"^([-\w]+)_(t|sh)$")
_PROVE_CASE = re.compile(r"^(\d+)(?: |$)")
_PROVE_HIGH_BYTES = re.compile(r"(?:\[\\x(?:7f|[89a-f][0-9a-f])\])+")


def _prove_script(suite_name: str) -> str:
    """The script a prove <testsuite> ran ("t2500-notify.t"), or "" for another writer's suite."""
    found = _PROVE_SUITE.match(suite_name)
    return f"{found.group(1)}.{found.group(2)}" if found else ""


def _from_prove(text: str) -> str:
    """Text as the script printed it, before prove's JUnit formatter made it "squeaky clean"."""
    text = text.replace("^I", "\t")
    return _PROVE_HIGH_BYTES.sub(lambda found: bytes.fromhex(found.group().replace("[\\x", "").replace("]", ""))
                                 .decode("utf-8", "replace"), text)


class _ProveOutput:
    """A prove suite's <system-out>, the script's whole TAP stream, read line by line as it arrives."""

    def __init__(self) -> None:
        self.stream = _TapStream()
        self.partial = ""

    def add(self, data: str) -> None:
        lines = (self.partial + data).split("\n")
        self.partial = lines.pop()[:MAX_DETAIL_CHARS]  # a line without end costs no more than this
        for line in lines:
            self._read(line)

    def close(self) -> None:
        self._read(self.partial)
        self.partial = ""

    def _read(self, line: str) -> None:
        if not self.stream.bailed_out:
            self.stream.read(_from_prove(line[:MAX_DETAIL_CHARS]).rstrip())

    def details(self) -> dict[int, str]:
        return {test.number: test.to_case().detail for test in self.stream.tests if test.outcome in FAILING}


@dataclass
class _SuiteBeingRead:
    """An open <testsuite>: the script it ran if prove wrote it, and where its cases start."""

    script: str
    depth: int
    first_case: int
    output: _ProveOutput | None = None


class _JunitReader:
    """expat's handlers: keeps one case at a time, and the finished cases."""

    def __init__(self, parser: expat.XMLParserType) -> None:
        self.parser = parser
        self.depth = 0
        self.elements = 0
        self.case: _CaseBeingRead | None = None
        self.cases: list[TestCase] = []
        self.suites: list[_SuiteBeingRead] = []  # the <testsuite> elements open, innermost last
        self.tap_output: _ProveOutput | None = None  # a prove suite's <system-out> being read

    def start_root(self, tag: str, attributes: dict[str, str]) -> None:
        if tag not in ("testsuites", "testsuite"):
            raise ReportError(f"not a JUnit report: the root element is <{one_line(tag, 100)}>")
        self.parser.StartElementHandler = self.start
        self.start(tag, attributes)

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        # Called for every element: a hostile report has millions, so this stays short.
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_DEPTH or self.elements > MAX_ELEMENTS:
            raise ReportError(f"elements nested more than {MAX_DEPTH} deep" if self.depth > MAX_DEPTH
                              else f"more than {MAX_ELEMENTS} elements")
        if self.case is None:
            if tag == "testcase":
                self._start_case(attributes)
            elif tag == "testsuite":
                self.suites.append(_SuiteBeingRead(_prove_script(attributes.get("name", "")), self.depth, len(self.cases)))
            elif tag == "system-out" and self.suites and self.suites[-1].script and self.depth == self.suites[-1].depth + 1:
                self.tap_output = self.suites[-1].output = _ProveOutput()
        elif self.depth == self.case.depth + 1 and tag in _RESULT_TAGS and tag not in self.case.results:
            result = _ResultRead(_first_line(attributes.get("message", "")), _TextTail())
            self.case.results[tag] = self.case.open_result = result

    def end(self, tag: str) -> None:
        case = self.case
        if case is not None:
            if self.depth == case.depth:
                self._end_case(case)
            elif self.depth == case.depth + 1:
                case.open_result = None
        elif self.tap_output is not None and tag == "system-out":
            self.tap_output.close()
            self.tap_output = None
        elif self.suites and self.depth == self.suites[-1].depth:
            self._end_suite(self.suites.pop())
        self.depth -= 1

    def text(self, data: str) -> None:
        if self.case is not None and self.case.open_result is not None:
            self.case.open_result.text.add(data)
        elif self.tap_output is not None:
            self.tap_output.add(data)

    def report(self) -> TestReport:
        return _build_report(self.cases)

    def _start_case(self, attributes: dict[str, str]) -> None:
        classname = attributes.get("classname") or attributes.get("class") or ""
        name = attributes.get("name", "")
        script = self.suites[-1].script if self.suites else ""
        if not classname and script and _PROVE_CASE.match(name):
            classname = script  # "t2500-notify.t::2 - Test subject ...": the script names it
        # pytest's classname is the module path ("test.python.test_rpc")
        full = f"{classname[:MAX_NAME_CHARS]}::{name[:MAX_NAME_CHARS]}" if classname else name[:MAX_NAME_CHARS]
        self.case = _CaseBeingRead(_name(full), name[:MAX_NAME_CHARS], self.depth)

    def _end_case(self, case: _CaseBeingRead) -> None:
        self.case = None
        self.cases.append(case.to_case())
        # Stop at once: a 64 MB report of tiny cases is refused in a second, not counted for a minute.
        _check_case_count(len(self.cases))

    def _end_suite(self, suite: _SuiteBeingRead) -> None:
        """A prove suite's failing cases get their detail from the TAP stream in its <system-out>:
        what the script printed before `not ok N` belongs to test N, while prove's <failure> holds
        what came after it (sharness's echo of the test's source, then the next test's output)."""
        if suite.output is None:
            return
        details = suite.output.details()
        for index in range(suite.first_case, len(self.cases)):
            case = self.cases[index]
            number = _PROVE_CASE.match(case.name.split("::", 1)[-1])
            if case.outcome in FAILING and number and details.get(int(number.group(1))):
                self.cases[index] = TestCase(case.name, case.outcome, case.message, details[int(number.group(1))])


def _message_from_text(text: str, test_name: str) -> str:
    """The text's first line past the test id (phpunit starts a failure with "Class::test")."""
    lines = text.strip().split("\n", 2)
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
    """A test line as read; the last MAX_DETAIL_LINES diagnostics that follow a failure are its detail."""

    number: int
    name: str
    outcome: Outcome
    message: str
    detail_lines: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_DETAIL_LINES))
    cut_lines: int = 0
    first_diagnostic: str = ""  # its first diagnostic line, without "#" or the YAML start marker

    def add_output(self, line: str) -> None:
        """A line the test printed before its result line (which is not a diagnostic)."""
        if len(self.detail_lines) == MAX_DETAIL_LINES:
            self.cut_lines += 1
        self.detail_lines.append(line[:MAX_DETAIL_CHARS])

    def add_diagnostic(self, line: str) -> None:
        self.add_output(line)
        if not self.first_diagnostic:
            text = line.lstrip("#").strip()
            self.first_diagnostic = _first_line(text) if text != "---" else ""

    def to_case(self) -> TestCase:
        detail = "\n".join(self.detail_lines)
        if self.cut_lines:
            detail = f"[... {self.cut_lines} lines cut]\n{detail}"
        return TestCase(self.name, self.outcome, self.message or self.first_diagnostic, _cap_detail(detail))


def parse_tap(text: str) -> TestReport:
    """Read a TAP 12/13 stream (Test::More, prove, PHP scripts); lines that are not TAP are ignored.

    Only top-level lines count (subtests are indented). `ok # TODO` passes; `not ok # TODO` is
    counted as skipped, as prove does not fail on it. Diagnostics (YAML blocks and `#` lines)
    after a failing test become its detail. "Bail out!" adds an ERROR case "bail out"; tests the
    plan announced but the stream lacks become ERROR cases "test N"; a missing or exceeded plan
    adds an ERROR case "plan".
    """
    stream = _TapStream()
    for line in _lines(text):
        if not stream.read(line.rstrip()):
            break
    return stream.report()


def _lines(text: str) -> Iterator[str]:
    """The lines of a long output one by one, rather than all of them in a list at once."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 1


@dataclass
class _TapStream:
    """What has been read of a TAP stream so far."""

    tests: list[_TapTest] = field(default_factory=list)
    plan: int | None = None
    skip_all_reason: str | None = None
    bail_out: str | None = None
    collecting: _TapTest | None = None  # the last test if it failed: it takes the diagnostics
    in_yaml: bool = False
    # What the script printed since the last test line that is not TAP: the output of the test
    # that comes next (sharness -v prints a test's commands' output, test_cmp's diff, before
    # its result line).
    output: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_DETAIL_LINES))

    @property
    def bailed_out(self) -> bool:
        return self.bail_out is not None

    def read(self, line: str) -> bool:
        """Take one line; False after "Bail out!", when the rest is not to be read."""
        if self.in_yaml or (_YAML_START.match(line) and self.tests):
            self.in_yaml = not _YAML_END.match(line)
            self._add_diagnostic(line)
        elif match := _TAP_TEST.match(line):
            self._add_test(_tap_test(match, len(self.tests) + 1))
        elif match := _TAP_PLAN.match(line):
            self._set_plan(int(match.group(1)), match.group(2))
            self.output.clear()
        elif match := _TAP_BAIL_OUT.match(line):
            self.bail_out = one_line(match.group(1), MAX_MESSAGE_CHARS)
            return False
        elif line.startswith("#"):
            self._add_diagnostic(line)
        else:
            self.output.append(line[:MAX_DETAIL_CHARS])
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
        if self.collecting is not None and any(line.strip() for line in self.output):
            for line in self.output:
                test.add_output(line)
        self.output.clear()

    def _add_diagnostic(self, line: str) -> None:
        if self.collecting is not None:
            self.collecting.add_diagnostic(line)

    def _set_plan(self, plan: int, comment: str | None) -> None:
        _check_case_count(plan)
        self.plan, self.collecting = plan, None
        directive = _TAP_DIRECTIVE.match(comment or "")
        if plan == 0 and directive and directive.group(1).upper() == "SKIP":  # `1..0 # SKIP reason`
            self.skip_all_reason = one_line(directive.group(2), MAX_MESSAGE_CHARS)

    def _plan_problems(self) -> list[TestCase]:
        """ERROR cases for a bail out, tests the plan announced but never ran, a wrong or absent plan."""
        if self.bail_out is not None:
            return [TestCase("bail out", Outcome.ERROR, self.bail_out, "")]
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
    name = _name(description[:MAX_NAME_CHARS * 2]) or f"test {number}"
    directive = _TAP_DIRECTIVE.match(directive_text[0].strip() if directive_text else "")
    if directive:
        kind, reason = directive.group(1).upper(), directive.group(2)
        if kind == "SKIP" or failed:
            reason = one_line(reason, MAX_MESSAGE_CHARS)
            return _TapTest(number, name, Outcome.SKIPPED, f"{kind}: {reason}" if reason else kind)
    return _TapTest(number, name, Outcome.FAIL if failed else Outcome.PASS, "")


# -- what a reader sees of a test ------------------------------------------------------------

EXCERPT_LINES = 20
# A TAP script's test as the JUnit reader names it (prove's cases), with report order's " #2".
_SCRIPT_TEST = re.compile(r"^(?P<script>[^:\s]+\.(?:t|sh))::(?P<number>\d+)(?: - (?P<description>.*?))?(?P<repeat> #\d+)?$")
# pytest's classname: the module's dotted path, then its classes ("test.test_util.TestQuery").
_PYTEST_CASE = re.compile(r"^(?P<classname>[A-Za-z_][\w.]*)::(?P<name>.+)$")
_PYTEST_MODULE = re.compile(r"^test_\w*$|^\w*_test$")


def display_name(name: str) -> str:
    """A test as a reader would name it to run it again: `t2500-notify.t #2: Test subject ...`
    for a TAP script's test, `test/test_util.py::test_to_qs` for a pytest case (JUnit gives the
    module as "test.test_util"); any other name as it is."""
    if script := _SCRIPT_TEST.match(name):
        description = f": {script.group('description')}" if script.group("description") else ""
        return f"{script.group('script')} #{script.group('number')}{description}{script.group('repeat') or ''}"
    if case := _PYTEST_CASE.match(name):
        parts = case.group("classname").split(".")
        modules = [index for index, part in enumerate(parts) if _PYTEST_MODULE.match(part)]
        if modules:
            module = modules[-1]
            return "::".join(["/".join(parts[: module + 1]) + ".py", *parts[module + 1:], case.group("name")])
    return name


# sharness's echo of a test's source: "expecting success: <body>" before the test runs (-v), the
# body's lines indented as written; each line after `not ok` as "#" and a tab.
_ECHO_START = re.compile(r"^expecting (?:success|failure): ")
_TAP_RESULT_LINE = re.compile(r"^(?:not )?ok\b")
_DIFF_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
# Test::More's diagnostics of a failed comparison: "#   Failed test 'x'", "#          got: '1'",
# "#     expected: '2'", is_deeply's "#     Structures begin differing at:".
_COMPARISON_DIAGNOSTIC = re.compile(r"^#\s+(?:Failed test|got:|expected:|Structures begin|\$got|\$expected|at .* line \d+)")


def failure_excerpt(detail: str) -> str:
    """The lines that show a failing comparison: pytest's `>` and `E` lines; the unified diffs a
    test printed (sharness's test_cmp) and Test::More's got/expected; else the end of what the
    test printed. Never the test's own source (sharness echoes it); "" when that is all there is.
    Tabs are expanded: a reply shows them as spaces, never as "^I"."""
    lines = _without_echoed_source(detail.strip("\n").splitlines())
    marked = [index for index, line in enumerate(lines) if line.startswith(("E ", ">"))]
    if marked:
        lines = [line for line in lines if line.strip()]
        marked = [index for index, line in enumerate(lines) if line.startswith(("E ", ">"))]
        lines = lines[marked[0]: marked[-1] + 2]  # and the line after: "test/test_util.py:36: AssertionError"
        if len(lines) > EXCERPT_LINES:
            # A long assertion diff: its start (the assertion) and where it failed, not its middle.
            lines = [*lines[: EXCERPT_LINES - 2], "[...]", lines[-1]]
        return "\n".join(line.expandtabs() for line in lines)
    shown = _comparisons(lines)
    if not shown:
        shown = [line for line in lines if line.strip() and not _TAP_RESULT_LINE.match(line)][-EXCERPT_LINES:]
    if len(shown) > EXCERPT_LINES:
        shown = [*shown[: EXCERPT_LINES - 1], "[...]"]
    return "\n".join(line.expandtabs().rstrip() for line in shown)


def _without_echoed_source(lines: list[str]) -> list[str]:
    kept, in_echo = [], False
    for line in lines:
        if _ECHO_START.match(line):
            in_echo = True
            continue
        if in_echo and (line.startswith(("\t", " ")) or not line.strip()):
            continue
        in_echo = False
        if line.startswith("#\t") or line == "#":
            continue
        kept.append(line)
    return kept


def _comparisons(lines: list[str]) -> list[str]:
    """Test::More's comparison diagnostics and every unified diff, in the order printed."""
    shown, index = [], 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            diff = _diff_at(lines, index)
            shown.extend(diff)
            index += len(diff)
            continue
        if _COMPARISON_DIAGNOSTIC.match(line):
            shown.append(line)
        index += 1
    return shown


def _diff_at(lines: list[str], start: int) -> list[str]:
    """The unified diff starting at `start`, its hunks read by their line counts; the file
    headers without their timestamps (the machine's, and noise to a reader)."""
    diff = [lines[start].split("\t", 1)[0], lines[start + 1].split("\t", 1)[0]]
    index = start + 2
    while index < len(lines) and (hunk := _DIFF_HUNK.match(lines[index])):
        old, new = int(hunk.group(1) or 1), int(hunk.group(2) or 1)
        diff.append(lines[index])
        index += 1
        while (old > 0 or new > 0) and index < len(lines):
            line = lines[index]
            kind = line[:1]
            if kind == "\\":
                pass
            elif kind == "-":
                old -= 1
            elif kind == "+":
                new -= 1
            elif kind in (" ", ""):
                old, new = old - 1, new - 1
            else:
                break
            diff.append(line)
            index += 1
    return diff
