"""`patchbot: test <ref>`: test the series on another base (a branch, tag or commit)."""

from __future__ import annotations

import re

from patchbot.testing.apply import ensure_mirror, resolve_fetching
from patchbot.commands.protocol import CommandContext, CommandOutcome
from patchbot.commands.authorize import MAINTAINER
from patchbot.commands.retest import queue_test
from patchbot.store.records import SeriesRecord

# A ref is given to git: no option ("-x"), no range or revision expression.
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,200}$")


class Test:
    name = "test"
    arguments = "<ref>"
    allowed = (MAINTAINER,)
    description = "test the series on another base: a branch, tag or commit of the repository"

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        if len(args) != 1:
            return CommandOutcome.ignored("test takes one argument, the branch, tag or commit to test on")
        ref = args[0]
        if not _REF.match(ref) or ".." in ref:
            return CommandOutcome.ignored(f"{ref!r} is not a branch, tag or commit name")
        repository = context.config.repository
        if repository is None:
            return CommandOutcome.refused("no repository is configured")
        # Checked now: a request for a base that does not exist would be retried for ever.
        mirror = ensure_mirror(repository.url, context.work / "mirrors")
        if resolve_fetching(mirror, ref, refresh=True) is None:
            return CommandOutcome.refused(f"{ref} is not a branch, tag or commit of {repository.url}")
        return queue_test(context, series, f"test on {ref} asked by {context.sender}", ref, None)


COMMANDS = (Test(),)
