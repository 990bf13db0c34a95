"""`patchbot: retest [suite]`: test the series again (only one suite, when named)."""

from __future__ import annotations

from patchbot.commands.protocol import CommandContext, CommandOutcome
from patchbot.commands.authorize import AUTHOR, MAINTAINER
from patchbot.store.records import SeriesRecord


class Retest:
    name = "retest"
    arguments = "[suite]"
    allowed = (MAINTAINER, AUTHOR)
    description = "test the series again, every suite or the one named; the result is a new reply"

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        if len(args) > 1:
            return CommandOutcome.ignored("retest takes at most one argument, a suite's name")
        suite = args[0] if args else None
        if suite is not None and suite not in context.config.suites:
            return CommandOutcome.ignored(f"there is no suite {suite!r} (suites: {', '.join(context.config.suites)})")
        return queue_test(context, series, f"retest asked by {context.sender}", None, suite)


def queue_test(context: CommandContext, series: SeriesRecord, reason: str, base_ref: str | None,
               suite: str | None) -> CommandOutcome:
    """Add a test request (the run tests stage tests it and replies in the thread)."""
    if series.ignored:
        return CommandOutcome.refused("this series is ignored; \"patchbot: unignore\" first")
    with context.store.transaction():
        context.store.request_test(series.id, reason, base_ref, suite=suite)
    what = f"the {suite} suite" if suite else "the series"
    where = f" on {base_ref}" if base_ref else ""
    return CommandOutcome.done(f"{what} will be tested{where}; the result follows in this thread")


COMMANDS = (Retest(),)
