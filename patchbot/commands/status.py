"""`patchbot: status`: where a series stands: its state, its last test, its place in the queue."""

from __future__ import annotations

from patchbot.commands.protocol import CommandContext, CommandOutcome
from patchbot.commands.authorize import AUTHOR, MAINTAINER
from patchbot.text.render import render
from patchbot.reply.report import result_context
from patchbot.store.records import SeriesRecord


class Status:
    name = "status"
    arguments = ""
    allowed = (MAINTAINER, AUTHOR)
    description = "the series' state, its last test and its place in the queue"

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        store = context.store
        received = len(series.patches)
        state = [f"v{series.version}, {received} of {series.total or '?'} patches"
                 + (" (complete)" if series.complete else " (incomplete)")]
        if series.obsolete:
            state.append("superseded by a newer version")
        if series.ignored:
            state.append("ignored (\"patchbot: unignore\" undoes it)")
        run = store.latest_test_run(series.id)
        last = result_context(context.config, series, run) if run else None
        queue = store.pending_test_requests()
        waiting = [f"test request {request.number} ({request.reason}), {index} of {len(queue)} in the queue"
                   for index, request in enumerate(queue, 1) if request.series_id == series.id]
        text = render("commands/status.txt", series_id=series.id, title=series.title, state="; ".join(state),
                      last_run=run.id if run else None, tip=(run.summary.get("head") or "")[:12] if run else "",
                      headline=last["headline"] if last else "",
                      suite_lines=last["suite_lines"] if last else [], waiting=waiting)
        return CommandOutcome.done(text.rstrip("\n"))


COMMANDS = (Status(),)
