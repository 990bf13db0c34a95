"""Decide who hears each reply: the list, the author, the person who asked ([reply] volume rules).

One service run with 6 patch versions and 5 command mails once sent 11 mails to the list: every
PASS, every acknowledgement and a stranger's refusal went to everyone (issue 13). The rules:

Results. With `results = "always"` every result goes To the list, Cc the author, as before.
With `results = "failures"` (the default), the first rule that holds decides:
  1. not a clean pass (a new failure, an apply failure, a time limit, a suite that could not run
     or cannot judge, a suite not run until its dependencies are trusted, nothing tested):
     To the list, Cc the author;
  2. a clean pass that corrects what the list was told: the result before it (this version's
     previous result, else the last result of the version it re-rolls; a run the machine failed
     is no result, it was never mailed) was not a clean pass: the list heard of the failure, so
     it hears of the fix;
  3. a clean pass of a first-time contributor's series ("first-time" in pass_to): no series
     filed before this one from the author's address has a test run; the list welcomes them;
  4. a clean pass that was asked for ("asked" in pass_to; a `patchbot: retest` or `test`):
     To the asker, Cc the author; Cc the list too when the asker is a maintainer (a
     maintainer's question is part of a review in public, the decision to apply hangs on it);
  5. any other clean pass: To the author alone (with [mail] cc_author = false: nobody).
A result mailed to nobody is still kept as a test run (`patchbot series show`, `patchbot
status`, the `patchbot: status` command) and its request is finished: it is never sent later.

A version superseded before its test: "always" as a result; "failures": the author alone (the
newer version's own result tells the list what counts).

Commands. An acknowledgement goes To the command's sender, Cc the list only when a command
that changes what the list sees was done (LIST_COMMANDS); a refusal, a rate-limit note and the
note on an interrupted mail go to the sender alone.

Without a [mail] list every reply goes to the author (results) or the sender (commands). A reply
for one person whom only SMTPUTF8 reaches (a non-ASCII local part) goes To the list, Cc them, as
before: a relay without SMTPUTF8 could not send it to them alone (CARRIED).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from patchbot.config.records import Config, ReplyConfig
from patchbot.mail.headers import formatted_address
from patchbot.reply.compose import needs_smtputf8, wire_address
from patchbot.reply.report import Reply
from patchbot.text.safe_text import one_line
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord, StoredTestRun, TestRequest

# Commands whose acknowledgement the list hears: they change what the list will see (apply
# pushes the series; ignore stops its results; unignore undoes that, so it is said where it was).
LIST_COMMANDS = frozenset({"apply", "ignore", "unignore"})
# How a test request made by a command names its asker: commands/retest.py queue_test's reasons
# end so ("retest asked by lukas@example.org", "test on next asked by lukas@example.org").
ASKED_BY = " asked by "

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Audience:
    """Who gets one reply, and the rule that said so."""

    to: tuple[str, ...]
    cc: tuple[str, ...]
    rule: str

    @property
    def anyone(self) -> bool:
        return bool(self.to or self.cc)


@dataclass(frozen=True)
class Readers:
    """Who could hear a reply in a series' thread."""

    list_address: str | None
    author: str  # "Name <addr>"
    author_address: str  # lower case
    cc_author: bool


@dataclass(frozen=True)
class ResultFacts:
    """What the result rules look at, gathered from the store by result_facts."""

    clean_pass: bool
    corrects_failure: bool
    first_time: bool
    asker: str | None = None  # the address that asked for this test, lower case
    asker_is_maintainer: bool = False


def result_audience(rules: ReplyConfig, readers: Readers, facts: ResultFacts) -> Audience:
    """Who hears a test result (see the module docstring)."""
    if readers.list_address is None:
        return _everyone(readers, "no list")
    if rules.results == "always":
        return _everyone(readers, "results = always")
    for rule, holds in _TO_THE_LIST:
        if holds(rules, facts):
            return _everyone(readers, rule)
    if "asked" in rules.pass_to and facts.asker:
        return _asker(readers, facts)
    return _author_alone(readers, "pass, author only")


# With results = "failures": the results the list hears, first rule that holds.
_TO_THE_LIST = (
    ("not a clean pass", lambda rules, facts: not facts.clean_pass),
    ("corrects a failure", lambda rules, facts: facts.corrects_failure),
    ("first-time contributor", lambda rules, facts: "first-time" in rules.pass_to and facts.first_time),
)


def superseded_audience(rules: ReplyConfig, readers: Readers) -> Audience:
    """Who hears that a version was replaced before its test."""
    if readers.list_address is None or rules.results == "always":
        return _everyone(readers, "no list" if readers.list_address is None else "results = always")
    return _author_alone(readers, "superseded, author only")


def command_audience(list_address: str | None, sender: str, address: str, done: frozenset[str]) -> Audience:
    """Who hears the answer to a command mail: `sender` ("Name <addr>" of `address`), and the list
    when one of the verbs `done` changes what it sees. A refusal has nothing done: it stays
    private, unless only SMTPUTF8 reaches the sender (see only_smtputf8_reaches)."""
    shown = sorted(done & LIST_COMMANDS)
    if list_address is not None and shown:
        return Audience((sender,), (list_address,), f"{', '.join(shown)} done")
    if list_address is not None and only_smtputf8_reaches(address):
        return Audience((list_address,), (sender,), CARRIED)
    return Audience((sender,), (), "sender only")


# A reply meant for one person whose address has a non-ASCII local part ("jörg@exämple.com",
# RFC 6532) reaches them only through a relay offering SMTPUTF8; without it the outbox sends a
# reply to the list without that address (issue 11 item 6), and one to that person alone could
# not go at all. Such a reply goes as before: To the list, Cc the person.
CARRIED = "only SMTPUTF8 reaches the person: the list carries it"


def only_smtputf8_reaches(address: str) -> bool:
    return needs_smtputf8(wire_address(address))


def is_clean_pass(summary: dict) -> bool:
    """The series applied and every suite that concerns it ran and passed (pre-existing
    failures aside): the one result a list can do without."""
    suites = summary.get("suites") or []
    return (summary.get("applied", False) and summary.get("outcome") == "pass" and bool(suites)
            and all(suite["status"] == "pass" for suite in suites))


def asker_of(request: TestRequest) -> str | None:
    """The address that asked for this test by a command, or None (a series' own first test)."""
    _, found, asker = request.reason.rpartition(ASKED_BY)
    return (asker.strip().lower() or None) if found else None


def readers_of(config: Config, series: SeriesRecord) -> Readers:
    return Readers(config.mail.list_address, formatted_address(one_line(series.author_name), series.author),
                   series.author.lower(), config.mail.cc_author)


def result_facts(store: Store, config: Config, series: SeriesRecord, run: StoredTestRun,
                 request: TestRequest) -> ResultFacts:
    before = _last_result(store.summaries_before(series.id, run.id))
    if before is None and series.supersedes_id is not None:
        before = _last_result(store.summaries_before(series.supersedes_id))
    asker = asker_of(request)
    return ResultFacts(
        clean_pass=is_clean_pass(run.summary),
        corrects_failure=before is not None and not is_clean_pass(before),
        first_time=not store.author_tested_before(series.author, series.id),
        asker=asker,
        asker_is_maintainer=asker is not None and asker in config.commands.maintainers,
    )


def _last_result(summaries: list[dict]) -> dict | None:
    """The newest of these runs that was a result: a run the machine failed (a suite that could
    not run or cannot judge) is kept quiet and retried (pipeline.machine_failed), never mailed."""
    return next((summary for summary in summaries
                 if not any(suite["status"] == "infra-error" for suite in summary.get("suites") or [])), None)


def addressed(reply: Reply, audience: Audience) -> Reply | None:
    """The reply with the audience's recipients, or None when nobody is to hear it."""
    return dataclasses.replace(reply, to=audience.to, cc=audience.cc) if audience.anyone else None


def _everyone(readers: Readers, rule: str) -> Audience:
    if readers.list_address is None:
        return Audience((readers.author,), (), rule)
    return Audience((readers.list_address,), (readers.author,) if readers.cc_author else (), rule)


def _author_alone(readers: Readers, rule: str) -> Audience:
    if readers.cc_author and only_smtputf8_reaches(readers.author_address):
        return _everyone(readers, CARRIED)
    if not readers.cc_author:
        return Audience((), (), rule + " (cc_author off: nobody)")
    return Audience((readers.author,), (), rule)


def _asker(readers: Readers, facts: ResultFacts) -> Audience:
    if only_smtputf8_reaches(facts.asker):
        return Audience((readers.list_address,), (facts.asker,), CARRIED)
    cc = (readers.list_address,) if facts.asker_is_maintainer else ()
    if readers.cc_author and facts.asker != readers.author_address:
        cc += (readers.author,)
    return Audience((facts.asker,), cc, "asked by a maintainer" if facts.asker_is_maintainer else "asked")


def addressed_result(store: Store, config: Config, series: SeriesRecord, run: StoredTestRun, request: TestRequest,
                     reply: Reply) -> Reply | None:
    """A result reply addressed by the rules; None when nobody is to hear it (the run is kept)."""
    facts = result_facts(store, config, series, run, request)
    audience = result_audience(config.reply, readers_of(config, series), facts)
    log.info("series %d v%d: result %s: %s", series.id, series.version, _whom(audience), audience.rule)
    return addressed(reply, audience)


def addressed_superseded(config: Config, series: SeriesRecord, reply: Reply) -> Reply | None:
    audience = superseded_audience(config.reply, readers_of(config, series))
    log.info("series %d v%d: note that it was superseded %s: %s", series.id, series.version, _whom(audience),
             audience.rule)
    return addressed(reply, audience)


def _whom(audience: Audience) -> str:
    if not audience.anyone:
        return "mailed to nobody (kept as a run)"
    return "to " + ", ".join(audience.to) + (f", Cc {', '.join(audience.cc)}" if audience.cc else "")
