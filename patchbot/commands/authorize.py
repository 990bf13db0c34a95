"""Decide who may use a command: an ordered table of named rules, the first that holds decides.

Maintainers (the config's list) may use every command; a series' author the few a command
opens to its author (retest, status, ignore, help); anyone else is refused. `sender` is
always whom identity.py found the mail to come from, never the From header as written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from patchbot.config.records import Config
from patchbot.store.records import SeriesRecord

MAINTAINER = "maintainer"
AUTHOR = "author"
EVERYONE_ELSE = "not-allowed"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the rule that decided: maintainer, author, not-allowed, identity
    reason: str = ""  # why it was refused, for the acknowledgement


# role -> whether the sender holds it for this series; checked in order.
ROLES: tuple[tuple[str, Callable[[str, SeriesRecord, Config], bool]], ...] = (
    (MAINTAINER, lambda sender, series, config: sender in config.commands.maintainers),
    (AUTHOR, lambda sender, series, config: sender == series.author.lower()),
)


def authorize(allowed: tuple[str, ...], sender: str, series: SeriesRecord, config: Config) -> Decision:
    """Whether `sender` may use a command open to the roles `allowed` on `series`."""
    for role, holds in ROLES:
        if role in allowed and holds(sender, series, config):
            return Decision(True, role)
    if AUTHOR in allowed:
        reason = "only the maintainers and the series' author may use it"
    else:
        reason = "only the maintainers may use it"
    return Decision(False, EVERYONE_ELSE, reason)
