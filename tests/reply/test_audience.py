"""Who hears what ([reply] volume rules, issue 13 item 3): each rule of patchbot.reply.audience, called
directly, and the facts it reads from a real store (first-time contributor, a corrected failure,
the asker of a retest)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from patchbot.reply.audience import (
    Readers, ResultFacts, asker_of, command_audience, is_clean_pass, result_audience, result_facts,
    superseded_audience,
)
from patchbot.config.records import CommandsConfig, Config, MailConfig, ReplyConfig
from patchbot.store.records import StoredTestRun, TestRequest

LIST = "aur-dev@lists.archlinux.org"
FRED = "Frédéric Mangano <fred@example.org>"
LUKAS = "lukas@example.org"
READERS = Readers(LIST, FRED, "fred@example.org", cc_author=True)
FAILURES = ReplyConfig()  # the default
ALWAYS = ReplyConfig(results="always")
EVERYONE = ((LIST,), (FRED,))
AUTHOR_ALONE = ((FRED,), ())
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def facts(clean_pass=True, corrects_failure=False, first_time=False, asker=None, asker_is_maintainer=False) -> ResultFacts:
    return ResultFacts(clean_pass, corrects_failure, first_time, asker, asker_is_maintainer)


def heard(rules: ReplyConfig, result: ResultFacts, readers: Readers = READERS) -> tuple:
    audience = result_audience(rules, readers, result)
    return audience.to, audience.cc


# -- results ------------------------------------------------------------------------------------

def test_results_always_sends_every_result_to_the_list_and_the_author():
    for result in (facts(), facts(clean_pass=False), facts(asker="eve@example.net")):
        assert heard(ALWAYS, result) == EVERYONE


def test_failures_a_result_that_is_not_a_clean_pass_goes_to_the_list():
    assert heard(FAILURES, facts(clean_pass=False)) == EVERYONE
    assert result_audience(FAILURES, READERS, facts(clean_pass=False)).rule == "not a clean pass"


def test_failures_a_plain_pass_goes_to_the_author_alone():
    audience = result_audience(FAILURES, READERS, facts())
    assert (audience.to, audience.cc, audience.rule) == (*AUTHOR_ALONE, "pass, author only")


def test_failures_a_plain_pass_without_cc_author_is_mailed_to_nobody():
    audience = result_audience(FAILURES, Readers(LIST, FRED, "fred@example.org", cc_author=False), facts())
    assert not audience.anyone


def test_failures_a_pass_of_a_first_time_contributor_goes_to_the_list():
    assert heard(FAILURES, facts(first_time=True)) == EVERYONE
    assert heard(ReplyConfig(pass_to=("asked",)), facts(first_time=True)) == AUTHOR_ALONE


def test_failures_a_pass_that_corrects_a_failure_the_list_heard_goes_to_the_list():
    # Whatever pass_to says: the list was told of the failure.
    assert heard(ReplyConfig(pass_to=()), facts(corrects_failure=True)) == EVERYONE


def test_failures_a_pass_asked_by_a_maintainer_goes_to_them_cc_the_list_and_the_author():
    assert heard(FAILURES, facts(asker=LUKAS, asker_is_maintainer=True)) == ((LUKAS,), (LIST, FRED))


def test_failures_a_pass_asked_by_its_author_is_private():
    assert heard(FAILURES, facts(asker="fred@example.org")) == (("fred@example.org",), ())


def test_failures_a_pass_asked_without_asked_in_pass_to_goes_to_the_author_alone():
    assert heard(ReplyConfig(pass_to=("first-time",)), facts(asker=LUKAS, asker_is_maintainer=True)) == AUTHOR_ALONE


def test_without_a_list_every_result_goes_to_the_author():
    readers = Readers(None, FRED, "fred@example.org", cc_author=True)
    for result in (facts(), facts(clean_pass=False), facts(asker=LUKAS, asker_is_maintainer=True)):
        assert heard(FAILURES, result, readers) == ((FRED,), ())


def test_a_superseded_version_is_told_to_the_author_alone_unless_results_always():
    assert (superseded_audience(FAILURES, READERS).to, superseded_audience(FAILURES, READERS).cc) == AUTHOR_ALONE
    assert (superseded_audience(ALWAYS, READERS).to, superseded_audience(ALWAYS, READERS).cc) == EVERYONE


SUITE_PASS = {"name": "python", "status": "pass"}


@pytest.mark.parametrize("summary, clean", [
    ({"applied": True, "outcome": "pass", "suites": [SUITE_PASS]}, True),
    ({"applied": True, "outcome": "fail", "suites": [SUITE_PASS, {"name": "php", "status": "fail"}]}, False),
    ({"applied": False, "outcome": "not-applied", "suites": []}, False),
    ({"applied": True, "outcome": "timeout", "suites": [{"name": "php", "status": "timeout"}]}, False),
    ({"applied": True, "outcome": "infra-error", "suites": [{"name": "php", "status": "infra-error"}]}, False),
    # A suite waiting for "patchbot: trust-deps" leaves the outcome PASS: a maintainer must act.
    ({"applied": True, "outcome": "pass", "suites": [SUITE_PASS, {"name": "php", "status": "skipped"}]}, False),
    ({"applied": True, "outcome": "skipped", "suites": []}, False),  # touches no code a suite covers
])
def test_a_clean_pass_is_every_suite_run_and_passed(summary, clean):
    assert is_clean_pass(summary) is clean


# -- commands -----------------------------------------------------------------------------------

def test_an_acknowledgement_goes_to_the_sender_alone():
    for verbs in ({"retest"}, {"status"}, {"help"}, {"test", "trust-deps"}, set()):
        audience = command_audience(LIST, "Lukas <lukas@example.org>", LUKAS, frozenset(verbs))
        assert (audience.to, audience.cc) == (("Lukas <lukas@example.org>",), ()), verbs


@pytest.mark.parametrize("verb", ["apply", "ignore", "unignore"])
def test_an_acknowledgement_of_a_command_that_changes_what_the_list_sees_cc_the_list(verb):
    audience = command_audience(LIST, "Lukas <lukas@example.org>", LUKAS, frozenset({"status", verb}))
    assert (audience.to, audience.cc) == (("Lukas <lukas@example.org>",), (LIST,))


def test_a_refusal_is_private():
    # Nothing was done: a stranger's "patchbot: apply" is refused to the stranger alone.
    audience = command_audience(LIST, "Eve <eve@example.net>", "eve@example.net", frozenset())
    assert (audience.to, audience.cc) == (("Eve <eve@example.net>",), ())


def test_a_reply_for_one_person_only_smtputf8_reaches_is_carried_by_the_list():
    # Without SMTPUTF8 the outbox sends to the list without that address: alone, it could not go.
    joerg, name = "jörg@exämple.com", "Jörg <jörg@exämple.com>"
    audience = command_audience(LIST, name, joerg, frozenset({"retest"}))
    assert (audience.to, audience.cc) == ((LIST,), (name,))
    readers = Readers(LIST, name, joerg, cc_author=True)
    assert heard(FAILURES, facts(), readers) == ((LIST,), (name,))
    assert heard(FAILURES, facts(asker=joerg), readers) == ((LIST,), (joerg,))
    # An internationalised domain behind an ASCII name goes as punycode: private as usual.
    assert command_audience(LIST, "Jo <jo@exämple.com>", "jo@exämple.com", frozenset()).to == ("Jo <jo@exämple.com>",)


# -- the facts, from a real store ---------------------------------------------------------------

def request(reason: str, number: int = 1) -> TestRequest:
    return TestRequest(1, 1, number, None, reason)


@pytest.mark.parametrize("reason, asker", [
    ("complete series", None),
    ("retest asked by lukas@example.org", LUKAS),
    ("test on next asked by Lukas@Example.org", LUKAS),
    ("unignored by lukas@example.org", None),
])
def test_the_asker_is_read_from_the_reason_a_command_gives(reason, asker):
    assert asker_of(request(reason)) == asker


def add_series(store, author: str, version: int = 1) -> int:
    with store.transaction():
        return store.add_series(title="rpc: a change", normalised_title="rpc: a change", author=author,
                                author_name="Someone", version=version, total=1, date=NOW)


def add_run(store, series_id: int, outcome: str) -> StoredTestRun:
    status = outcome if outcome != "not-applied" else None
    summary = {"applied": outcome != "not-applied", "outcome": outcome,
               "suites": [{"name": "python", "status": status}] if status else []}
    with store.transaction():
        run_id = store.add_test_run(series_id, NOW, summary, [])
    return store.test_run(run_id)


CONFIG = Config(mail=MailConfig(list_address=LIST), commands=CommandsConfig(maintainers=(LUKAS,)))


def test_a_first_time_contributor_has_no_earlier_series_with_a_test_run(store):
    untested = add_series(store, "new@example.org")  # filed, never tested (ignored, say)
    first = add_series(store, "New@Example.org")
    run = add_run(store, first, "pass")
    assert result_facts(store, CONFIG, store.series(first), run, request("complete series")).first_time
    second = add_series(store, "new@example.org")
    run = add_run(store, second, "pass")
    assert not result_facts(store, CONFIG, store.series(second), run, request("complete series")).first_time
    # A retest of the first series: still the first-timer's series.
    again = add_run(store, first, "pass")
    assert result_facts(store, CONFIG, store.series(first), again, request("retest", 2)).first_time
    assert store.series(untested) is not None


def test_a_pass_after_a_failure_of_the_same_version_or_the_one_it_rerolls_corrects_it(store):
    v1 = add_series(store, "fred@example.org")
    add_run(store, v1, "fail")
    v2 = add_series(store, "fred@example.org", version=2)
    with store.transaction():
        store.link_versions(v2, v1)
    passed = add_run(store, v2, "pass")
    assert result_facts(store, CONFIG, store.series(v2), passed, request("complete series")).corrects_failure
    again = add_run(store, v2, "pass")  # its retest: the run before it passed
    assert not result_facts(store, CONFIG, store.series(v2), again, request("retest", 2)).corrects_failure
    flaky = add_run(store, v2, "not-applied")
    assert not result_facts(store, CONFIG, store.series(v2), flaky, request("retest", 3)).clean_pass
    fixed = add_run(store, v2, "pass")
    assert result_facts(store, CONFIG, store.series(v2), fixed, request("retest", 4)).corrects_failure


def test_a_maintainer_asking_is_known_from_the_config(store):
    series = add_series(store, "fred@example.org")
    run = add_run(store, series, "pass")
    asked = result_facts(store, CONFIG, store.series(series), run, request(f"retest asked by {LUKAS}"))
    assert (asked.asker, asked.asker_is_maintainer) == (LUKAS, True)
    own = result_facts(store, CONFIG, store.series(series), run, request("retest asked by fred@example.org"))
    assert (own.asker, own.asker_is_maintainer) == ("fred@example.org", False)


def test_a_run_the_machine_failed_is_no_result_a_pass_could_correct(store):
    # pipeline.machine_failed keeps such a run quiet and retries: the list never heard of it.
    series = add_series(store, "fred@example.org")
    add_run(store, series, "pass")
    add_run(store, series, "infra-error")
    passed = add_run(store, series, "pass")
    assert not result_facts(store, CONFIG, store.series(series), passed, request("retest", 3)).corrects_failure
