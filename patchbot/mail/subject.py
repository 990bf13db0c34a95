"""Read the subject grammar of patch mail: counter, total, version, RFC, RESEND, tags, title."""

from __future__ import annotations

import re
from dataclasses import dataclass

# English and localised reply/forward markers (Re, Aw, Sv, Vs, Wg, Fwd, Odp, ...).
_REPLY_MARKER = re.compile(r"^\s*(re|aw|fwd?|\w{2,3})\s*(\[\d+\])?:\s*", re.IGNORECASE)
_ALWAYS_REPLY = {"re", "aw", "fw", "fwd", "sv", "vs", "wg", "odp", "antw", "res", "rif", "tr"}
_COUNTER = re.compile(r"^(\d+)/(\d+)$")
_VERSION = re.compile(r"^[vV](\d+)$")
_GLUED_VERSION = re.compile(r"\b(PATCH|RFC)[vV](\d+)\b", re.IGNORECASE)
_GLUED_COUNTER = re.compile(r"\b(PATCH|RFC)(\d+/\d+)\b", re.IGNORECASE)
_MERCURIAL_COUNTER = re.compile(r"\b(\d+) of (\d+)\b", re.IGNORECASE)
_TITLE_VERSION = re.compile(r"\(\s*[vV](\d+)\s*\)")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Subject:
    """What a subject line says about its mail."""

    title: str
    counter: int | None = None
    total: int | None = None
    version: int = 1
    rfc: bool = False
    resend: bool = False
    has_patch_marker: bool = False
    reply_marker: bool = False
    tags: tuple[str, ...] = ()

    @property
    def normalised_title(self) -> str:
        """The title reduced for comparing versions: case, spacing and `(vN)` ignored."""
        return _WHITESPACE.sub(" ", _TITLE_VERSION.sub("", self.title)).strip(" .:").lower()


def parse_subject(text: str) -> Subject:
    """Split a decoded subject into its prefixes and its title.

    Prefix groups `[...]` are peeled repeatedly (nested brackets flattened), reply markers
    between them are noted; inside a group `PATCHv3` reads as `PATCH v3`, `PATCH1/8` as
    `PATCH 1/8` and `1 of 8` (Mercurial) as `1/8`; tokens split on commas and spaces.
    """
    rest = _WHITESPACE.sub(" ", text).strip()
    tokens: list[str] = []
    reply = peeled = False
    while True:
        stripped, was_reply = _strip_reply_marker(rest, after_group=peeled)
        if was_reply:
            reply, rest = True, stripped.lstrip()
            continue  # "Re: Re: [PATCH]", "AW: Re: [PATCH]"
        if not rest.startswith("["):
            break
        group, rest = _take_bracket_group(rest)
        tokens.extend(_tokens_of(group))
        rest, peeled = rest.lstrip(), True
    return _subject_from(tokens, rest.strip(), reply)


def _strip_reply_marker(rest: str, after_group: bool) -> tuple[str, bool]:
    match = _REPLY_MARKER.match(rest)
    if not match:
        return rest, False
    word = match.group(1).lower()
    after = rest[match.end():]
    # "mm: fix leak" is a title, not a reply; so is "re: drop dead code" after "[PATCH 4/5]"
    # (a patch to Python's re module). A marker counts before any prefix group when it is a
    # known one, and anywhere when another prefix group follows it ("[aur-dev] Re: [PATCH]").
    if after.startswith("[") or (word in _ALWAYS_REPLY and not after_group):
        return after, True
    return rest, False


def _take_bracket_group(rest: str) -> tuple[str, str]:
    depth = 0
    for index, char in enumerate(rest):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return rest[1:index].replace("[", " ").replace("]", " "), rest[index + 1:]
    # An unclosed group: everything after the bracket is the group.
    return rest[1:].replace("[", " "), ""


def _tokens_of(group: str) -> list[str]:
    group = _GLUED_VERSION.sub(r"\1 v\2", group)
    group = _GLUED_COUNTER.sub(r"\1 \2", group)
    group = _MERCURIAL_COUNTER.sub(r"\1/\2", group)
    return [token for token in re.split(r"[,\s]+", group) if token]


# Beyond this a counter or version is noise (or fuzz), not a position in a series.
MAX_NUMBER = 9999


def _small(digits: str) -> int | None:
    # Leading zeros are fine ("[PATCH 001/120]"); the length check keeps int() cheap.
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= len(str(MAX_NUMBER)) and int(significant) <= MAX_NUMBER else None


def _subject_from(tokens: list[str], title: str, reply: bool) -> Subject:
    counter = total = None
    version = None
    rfc = resend = marker = False
    tags = []
    for token in tokens:
        upper = token.upper()
        if (match := _COUNTER.match(token)) and counter is None:
            counter, total = _small(match.group(1)), _small(match.group(2))
            if counter is None or total is None:
                counter = total = None
        elif (match := _VERSION.match(token)) and version is None:
            version = _small(match.group(1))
        elif upper == "PATCH":
            marker = True
        elif upper == "RFC":
            rfc = True
        elif upper == "RESEND":
            resend = True
        else:
            tags.append(token)
    if version is None and (match := _TITLE_VERSION.search(title)):
        version = _small(match.group(1))
    # A counter beyond its total is kept: `[PATCH 3/2]`, sent after a 0/2 cover letter, is a
    # patch its author added to the series (Patchwork keeps it in the series too).
    if total == 0:
        counter = total = None
    title = title.lstrip(" :").strip()
    return Subject(
        title=title,
        counter=counter,
        total=total,
        version=version if version and version > 0 else 1,
        rfc=rfc,
        resend=resend,
        has_patch_marker=marker or counter is not None,
        reply_marker=reply,
        tags=tuple(tags),
    )
