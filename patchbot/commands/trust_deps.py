"""`patchbot: trust-deps`: let this series' changed dependency files build with network, and retest.

A series that changes an environment's key files (setup.py, requirements.txt...) gets an
environment built from them without network (patchbot.testing.environments); when that does not build,
its suites wait for a maintainer, who reads the files and answers with this command. The trust
is recorded for exactly the files of the series' last test (their digest): a later version, or
the same patches on another base giving other files, needs its own.
"""

from __future__ import annotations

from patchbot.commands.protocol import CommandContext, CommandOutcome, latest_run_of_current
from patchbot.commands.authorize import MAINTAINER
from patchbot.commands.retest import queue_test
from patchbot.store.records import SeriesRecord


class TrustDeps:
    name = "trust-deps"
    arguments = ""
    allowed = (MAINTAINER,)
    description = ("after reading the series' changed dependency files: let its environment be built from them"
                   " with network, and test it again")

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        if args:
            return CommandOutcome.ignored("trust-deps takes no arguments")
        run = latest_run_of_current(context, series)
        if isinstance(run, CommandOutcome):
            return run
        waiting = [note for note in run.summary.get("environments", []) if note["state"] == "needs-trust"]
        if not waiting:
            return CommandOutcome.refused(f"its last test (run {run.id}) did not wait for trusted dependencies")
        with context.store.transaction():
            for note in waiting:
                context.store.trust_dependencies(series.id, note["name"], note["files_digest"], context.sender)
        names = ", ".join(note["name"] for note in waiting)
        queued = queue_test(context, series, f"trust-deps by {context.sender}", None, None)
        return CommandOutcome(queued.status, f"the dependency files of {names} are trusted for v{series.version};"
                                             f" {queued.text}", queued.rule)


COMMANDS = (TrustDeps(),)
