"""Why a test run could not start or happen: the machine's trouble, retried, never blamed on a patch."""

from __future__ import annotations

from patchbot import PatchbotError


class TestRunError(PatchbotError):
    """The run cannot start: no repository configured, the series is unknown or empty."""

    __test__ = False
