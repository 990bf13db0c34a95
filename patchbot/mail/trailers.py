"""Collect the trailers of a mail: sign-offs, reviews, and the hints that steer testing."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Review and authorship trailers, then those that tell patchbot about bases and versions.
KNOWN_TRAILERS = {
    name.lower(): name
    for name in (
        "Signed-off-by", "Reviewed-by", "Acked-by", "Tested-by", "Reported-by", "Suggested-by",
        "Co-developed-by", "Fixes", "Link",
        "base-commit", "Based-on", "Supersedes", "change-id", "Depends-on",
    )
}
_TRAILER = re.compile(r"^([A-Za-z][A-Za-z-]*[A-Za-z]):(.*)$")


@dataclass(frozen=True)
class Trailer:
    name: str  # canonical spelling, e.g. "Reviewed-by"
    value: str


def parse_trailers(prose: str) -> tuple[Trailer, ...]:
    """Known trailers anywhere in the prose (not quoted, not below a `-- ` signature)."""
    found = []
    for line in prose.split("\n"):
        if line == "-- ":
            break
        match = _TRAILER.match(line)
        if match and (name := KNOWN_TRAILERS.get(match.group(1).lower())) and (value := match.group(2).strip()):
            found.append(Trailer(name, value))
    return tuple(found)
