"""The service's log lines: one line per event, syslog priorities for journald under systemd."""

from __future__ import annotations

import logging

from patchbot.service.serve import LogLineFormatter


def _record(level: int, message: str, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("patchbot.service.pipeline", level, __file__, 1, message, (), exc_info)


def test_under_systemd_each_line_carries_its_priority_and_no_timestamp():
    formatter = LogLineFormatter(journal=True)
    assert formatter.format(_record(logging.ERROR, "series 3: could not be tested")) == \
        "<3>patchbot.service.pipeline: series 3: could not be tested"
    assert formatter.format(_record(logging.INFO, "x")).startswith("<6>")
    assert formatter.format(_record(logging.WARNING, "x")).startswith("<4>")


def test_elsewhere_a_line_has_time_and_level_and_a_traceback_stays_on_it():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys

        line = LogLineFormatter(journal=False).format(_record(logging.ERROR, "two\nlines", sys.exc_info()))
    assert "\n" not in line
    assert " ERROR patchbot.service.pipeline: two | lines | Traceback" in line
