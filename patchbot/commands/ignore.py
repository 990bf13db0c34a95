"""`patchbot: ignore` and `patchbot: unignore`: stop testing a series, or start again."""

from __future__ import annotations

from patchbot.commands.protocol import CommandContext, CommandOutcome
from patchbot.commands.authorize import AUTHOR, MAINTAINER
from patchbot.store.records import SeriesRecord


class Ignore:
    name = "ignore"
    arguments = ""
    allowed = (MAINTAINER, AUTHOR)
    description = "do not test this series (a test waiting in the queue is dropped)"

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        if series.ignored:
            return CommandOutcome.done("this series was ignored already")
        with context.store.transaction():
            context.store.set_ignored(series.id, True)
        return CommandOutcome.done("this series will not be tested; \"patchbot: unignore\" undoes it")


class Unignore:
    name = "unignore"
    arguments = ""
    allowed = (MAINTAINER,)
    description = "test this series again when asked (undoes ignore)"

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        if not series.ignored:
            return CommandOutcome.done("this series was not ignored")
        store = context.store
        tested = store.latest_test_run(series.id) is not None
        with store.transaction():
            store.set_ignored(series.id, False)
            waiting = any(request.series_id == series.id for request in store.pending_test_requests())
            if not tested and not waiting and series.complete and not series.obsolete:
                # Its first request may have been dropped while it was ignored.
                store.request_test(series.id, f"unignored by {context.sender}")
        return CommandOutcome.done("this series is no longer ignored" +
                                   ("; \"patchbot: retest\" tests it again" if tested else "; it will be tested"))


COMMANDS = (Ignore(), Unignore())
