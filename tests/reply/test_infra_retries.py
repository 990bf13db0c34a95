"""Infrastructure failures are the operator's, not the list's (issue 12 item 6).

With `workers = 2` two series once built one venv at once; the list received an ERROR reply ("a
problem of the test machine, not of the patch") with a reproduce block, the immediate retry
failed the same way, and the series never got a result. Now a run the machine failed (an
environment that will not build, a repository that cannot be read) is kept for the operator,
retried with backoff, and the list hears nothing until a real result exists; once the retries
are spent it gets one short reply, and `patchbot status` keeps the error.

Real things throughout: the sample project in git, its suites in bwrap, SQLite, the pipeline
run pass by pass as the service runs it, replies to aiosmtpd on 127.0.0.1. `[serve] retry_base`
is short so that the backoff is waited out in seconds, not minutes.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from outbox_support import aurweb_repo  # noqa: F401 - a module-scoped fixture: the sample repository
from outbox_support import Bot, Handler, cli_ok, parse, sample_mails, smtp_server, write_config

from patchbot.config.load import load_config
from patchbot.config.records import ConfigError
from patchbot.demo.sample import build_sample_repo
from patchbot.service.status import status_of, status_text

RETRIES = 2
RETRY_BASE = 0.3
BROKEN_BUILD = 'echo "pip: No space left on device" >&2; exit 1'
PHP_SUITE = 'requires = ["test/php/run.php"]\n'


def configure(folder: Path, repo: Path, port: int, environment_command: str = BROKEN_BUILD) -> Path:
    """The sample config, its php suite in an environment built by `environment_command`."""
    path = write_config(folder, repo, port)
    text = path.read_text()
    assert PHP_SUITE in text, "the sample config's php suite changed"
    text = text.replace(PHP_SUITE, PHP_SUITE + 'environment = "venv"\n')
    text += (f"\n[environments.venv]\ncommand = '{environment_command}'\nkey_files = [\"test/php/run.php\"]\n"
             f"\n[serve]\ninfra_retries = {RETRIES}\nretry_base = {RETRY_BASE}\n")
    path.write_text(text)
    return path


def wait_for_the_retry(bot: Bot) -> None:
    """Until the request waiting for its retry is due (the backoff is never skipped)."""
    [request] = bot.store.pending_test_requests()
    assert request.next_attempt_at is not None
    time.sleep(max(0.0, (request.next_attempt_at - datetime.now(timezone.utc)).total_seconds()) + 0.05)


def body_of(data: bytes) -> str:
    return parse(data).get_content().replace("\r\n", "\n")


def status(bot: Bot) -> str:
    return status_text(status_of(bot.store, datetime.now(timezone.utc)))


def php_fix_mail():
    """The sample's first series: one patch to web/, tested by the php and parity suites."""
    return sample_mails()[:1]


def test_an_environment_that_will_not_build_sends_nothing_until_the_retries_are_spent_then_one_short_reply(
        aurweb_repo, tmp_path):  # noqa: F811 - the fixture imported above
    handler = Handler()
    with smtp_server(handler) as port:
        config = configure(tmp_path, aurweb_repo, port)
        bot = Bot(config)
        try:
            counts = bot.feed(php_fix_mail())
            waits = []
            for attempt in range(1, RETRIES + 1):
                assert handler.messages == [], f"mail sent after attempt {attempt}"
                assert counts[-1].get("tests that could not run") == 1, counts
                [request] = bot.store.pending_test_requests()
                waits.append((request.next_attempt_at - datetime.now(timezone.utc)).total_seconds())
                assert request.attempts == attempt and "environment venv could not be built" in request.last_error
                shown = status(bot)
                assert f"(attempt {attempt + 1}): php: environment venv could not be built" in shown, shown
                assert "tests that could not run" not in bot.run(), "a pass before the retry is due must not run it"
                wait_for_the_retry(bot)
                counts = [bot.run()]
            # The retries are spent: one short reply, and the operator keeps the error.
            assert counts[-1].get("series not tested") == 1 and counts[-1].get("replies sent") == 1, counts
            assert len(handler.messages) == 1
            body = body_of(handler.messages[0][2])
            assert body.startswith("This patch could not be tested: the test machine failed, not the patch.\n"), body
            assert f"patchbot tried {RETRIES + 1} times; the operator was told" in body
            assert "php        ERROR   its environment could not be built" in body
            assert "parity     PASS" in body  # what did run
            for never in ("To reproduce", "git am", "No space left", "Full logs", "new failure", str(tmp_path)):
                assert never not in body, (never, body)
            assert bot.store.pending_test_requests() == []
            assert "ERROR    series 1 not tested (request 1): the machine failed all 3 attempts" in status(bot)
            given_up = json.loads(cli_ok(config, "status", "--json"))["tests"]["given_up"]
            assert [(item["series"], item["attempts"]) for item in given_up] == [(1, RETRIES + 1)]
            assert "environment venv could not be built" in given_up[0]["last_error"]
            # The kept runs show what happened; nothing more is ever sent.
            assert json.loads(cli_ok(config, "series", "show", "1", "--json"))["last_test"]["outcome"] == "infra-error"
            assert [bot.run(), bot.run()] and len(handler.messages) == 1
            assert waits[1] > waits[0] * 1.5, f"the backoff must double: {waits}"
        finally:
            bot.close()


def test_a_failure_fixed_before_the_retries_are_spent_gets_the_real_result_only(aurweb_repo, tmp_path):  # noqa: F811
    handler = Handler()
    with smtp_server(handler) as port:
        bot = Bot(configure(tmp_path, aurweb_repo, port))
        try:
            bot.feed(php_fix_mail())
            assert handler.messages == [] and "environment venv could not be built" in status(bot)
        finally:
            bot.close()
        # The operator fixes the environment (a SIGHUP reload does the same for serve).
        bot = Bot(configure(tmp_path, aurweb_repo, port, environment_command='echo ready > "$PATCHBOT_ENV/flag"'))
        try:
            wait_for_the_retry(bot)
            counts = bot.run()
            assert counts.get("series tested") == 1 and len(handler.messages) == 1, counts
            body = body_of(handler.messages[0][2])
            assert "every suite passed" in body and "could not be tested" not in body, body
            assert "not tested" not in status(bot) and "waiting to retry: 0" in status(bot)
        finally:
            bot.close()


def test_a_repository_that_cannot_be_read_is_retried_on_the_same_budget_then_answered_once(tmp_path):
    """A run that cannot start (GitError) used to be retried for ever, hourly, without a word."""
    repo = build_sample_repo(tmp_path / "upstream" / "aurweb")
    (tmp_path / "bot").mkdir()
    handler = Handler()
    with smtp_server(handler) as port:
        bot = Bot(configure(tmp_path / "bot", repo, port, environment_command="true"))
        try:
            shutil.move(repo, tmp_path / "moved-away")  # the repository unreachable from now on
            bot.feed(php_fix_mail())
            for _ in range(RETRIES):
                assert handler.messages == []
                [request] = bot.store.pending_test_requests()
                assert request.last_error and "git" in request.last_error
                wait_for_the_retry(bot)
                bot.run()
            assert len(handler.messages) == 1
            body = body_of(handler.messages[0][2])
            assert "could not be tested" in body and "the repository could not be read, so no suite ran" in body, body
            assert "To reproduce" not in body and str(tmp_path) not in body
            assert "ERROR    series 1 not tested" in status(bot)
        finally:
            bot.close()


def test_the_retry_settings_are_checked_naming_the_key(tmp_path):
    config = tmp_path / "patchbot.toml"
    for text, key, message in (("infra_retries = -1", "serve.infra_retries", "must be 0 or more"),
                               ('infra_retries = "4"', "serve.infra_retries", "must be a int, not str"),
                               ("retry_base = 0", "serve.retry_base", "must be greater than 0")):
        config.write_text(f"[serve]\n{text}\n")
        with pytest.raises(ConfigError) as raised:
            load_config(config)
        assert (raised.value.key, raised.value.message) == (key, message)
    config.write_text("[serve]\ninfra_retries = 0\n")
    assert load_config(config).serve.infra_retries == 0  # the first failure is answered
