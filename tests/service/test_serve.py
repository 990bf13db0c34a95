"""`patchbot serve` as a process: mail in over real LMTP, replies out at a real SMTP server on
loopback, signals, reload, status, and the grace period for incomplete series."""

from __future__ import annotations

import json
import mailbox
import signal
import smtplib
import subprocess
import sys
import time
from collections import Counter

import pytest
from dovecot import NOT_INSTALLED, dovecot_server, installed
from serve_support import ServiceUnderTest, parsed, sample_repo, series_tags, smtp, wait_for  # noqa: F401 - fixtures
from serve_support import sample_mails as _sample_mails

from patchbot.demo.sample import build_sample_repo
from patchbot.testing.sandbox import sandbox_available

PATCH = """\
From: Jane Doe <jane@example.org>
To: aur-dev@lists.archlinux.org
Subject: [PATCH {number}/2] doc: say {what}
Message-Id: <grace.{number}@example.org>
{threading}
Date: Sat, 28 Nov 2026 10:00:0{number} +0000

---
diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1 +1,2 @@
 {first_line}
+{what}
"""




def test_serve_answers_mail_delivered_over_lmtp_at_a_real_smtp_server(sample_repo, smtp, tmp_path):
    handler, port = smtp
    service = ServiceUnderTest(tmp_path, sample_repo, port)
    service.start()
    for data in _sample_mails():
        service.deliver(data)
    # Five series versions (one superseded before its turn, answered with a note), Lukas's
    # retest and its acknowledgement.
    wait_for(lambda: len(handler.messages) >= 7, 180, "seven replies", service)
    status = json.loads(service.patchbot("status", "--json").stdout)
    assert service.stop() == 0
    messages = parsed(handler)
    assert len(messages) == 7, [m["Subject"] for m in messages]
    assert len({m["Message-ID"] for m in messages}) == 7
    results = Counter(series_tags(handler))
    assert results == {"1/v1": 1, "2/v1": 3, "3/v1": 1, "4/v1": 1, "5/v2": 1}  # 2/v1: result, ack, retest
    # v1 of the suggest series is answered once: usually with a note (v2 came in the same
    # burst), with its results if a worker was free before v2 arrived.
    first_version = next(m for m in messages if m["X-Patchbot-Series"] == "3/v1").get_content()
    assert ("was not tested: v2 replaced it" in first_version and "v2: Port type=suggest of the RPC to Python" in first_version
            or "was tested" in first_version)
    for message in messages:
        assert message["In-Reply-To"] and message["Auto-Submitted"] == "auto-replied"
    assert status["outbox"]["sent"] + status["outbox"].get("pending", 0) >= 6
    assert status["services"][0]["sources"] == [f"lmtp 127.0.0.1:{service.lmtp_port}"]
    log = service.log_text()
    assert "INFO patchbot.sources.lmtp: lmtp: stored <" in log
    assert "Traceback" not in log
    # After the drain the service says it stopped, and the MTA can no longer deliver.
    after = service.patchbot("status")
    assert "stopped since" in after.stdout or ": stopped" in after.stdout
    with pytest.raises(OSError):
        service.deliver(_sample_mails()[0])


def test_sigterm_lets_a_running_test_finish_and_sends_its_reply(sample_repo, smtp, tmp_path):
    handler, port = smtp
    service = ServiceUnderTest(tmp_path, sample_repo, port)
    service.start()
    service.deliver(_sample_mails()[1])  # a Python change: its suites take a moment
    wait_for(lambda: "testing (complete series)" in service.log_text(), 60, "the test to start", service)
    assert service.stop() == 0
    assert series_tags(handler) == ["1/v1"]
    log = service.log_text()
    assert "SIGTERM: draining" in log
    assert log.index("SIGTERM: draining") < log.index("reply queued")


def test_sighup_reloads_the_config_and_keeps_the_old_one_when_the_new_is_invalid(sample_repo, smtp, tmp_path):
    handler, port = smtp
    service = ServiceUnderTest(tmp_path, sample_repo, port)
    service.start()
    good = service.config.read_text()
    service.config.write_text(good.replace('from = "patchbot <patchbot@patchbot.example.org>"',
                                           'from = "patchbot CI <ci@patchbot.example.org>"'))
    service.signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: configuration reloaded" in service.log_text(), 30, "the reload", service)
    service.config.write_text(good + "\n[serve]\nworkers = 0\n")  # invalid: a table twice, and 0
    service.signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: keeping the running configuration" in service.log_text(), 30, "the refusal", service)
    service.deliver(_sample_mails()[0])
    wait_for(lambda: handler.messages, 120, "a reply", service)
    assert service.stop() == 0
    assert parsed(handler)[0]["From"] == "patchbot CI <ci@patchbot.example.org>"
    service.config.write_text(good)
    status = service.patchbot("status")
    assert "SIGHUP: keeping the running configuration" in status.stdout  # a recent error


def test_an_incomplete_series_is_tested_after_its_grace_period_and_again_once_complete(sample_repo, smtp, tmp_path):
    handler, port = smtp
    service = ServiceUnderTest(tmp_path, sample_repo, port, extra_config="grace = 2")
    service.start()
    first_line = (sample_repo / "README.md").read_text().splitlines()[0]
    one = PATCH.format(number=1, what="one", first_line=first_line, threading="")
    service.deliver(one.encode())
    wait_for(lambda: handler.messages, 60, "the reply to the incomplete series", service)
    first = parsed(handler)[0]
    assert first["X-Patchbot-Series"] == "1/v1"
    two = PATCH.format(number=2, what="two", first_line=first_line,
                       threading="In-Reply-To: <grace.1@example.org>\nReferences: <grace.1@example.org>")
    service.deliver(two.encode())
    wait_for(lambda: len(handler.messages) >= 2, 60, "the reply to the completed series", service)
    assert service.stop() == 0
    assert series_tags(handler) == ["1/v1", "1/v1"]
    assert "incomplete series, grace period over" in service.log_text()
    assert "series completed after an incomplete test" in service.log_text()


def test_serve_takes_mail_from_a_real_imap_server_and_a_maildir(sample_repo, smtp, tmp_path):
    """Dovecot on loopback holds one patch, a Maildir another: both are answered, the IMAP one
    marked seen once stored."""
    if not installed():
        pytest.skip(NOT_INSTALLED)
    handler, port = smtp
    mails = _sample_mails()
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    with dovecot_server() as dovecot:
        dovecot.append(mails[0])
        maildir.add(mails[7])  # "rpc: say what is ported so far"
        sources = (f'[sources.imap]\nhost = "127.0.0.1"\nport = {dovecot.imaps_port}\nusername = "{dovecot.user}"\n'
                   f'password_file = "{dovecot.password_file}"\nca_file = "{dovecot.ca_file}"\npoll = 0.5\n'
                   f'[sources.maildir]\npath = "{tmp_path / "Maildir"}"\npoll = 0.5\n')
        service = ServiceUnderTest(tmp_path / "bot", sample_repo, port, sources=sources)
        service.start()
        wait_for(lambda: len(handler.messages) >= 2, 120, "two replies", service)
        flags = dovecot.flags()
        assert service.stop() == 0
    assert sorted(series_tags(handler)) == ["1/v1", "2/v1"]
    assert ["\\Seen" in line for line in flags] == [True]
    assert "imap: stored <" in service.log_text() and "maildir: stored <" in service.log_text()
    assert dovecot.password not in service.log_text()


def test_serve_on_a_unix_socket_replaces_the_stale_socket_a_kill_left(sample_repo, smtp, tmp_path):
    """Postfix delivers to a Unix socket; after a SIGKILL the socket file stays behind, and
    the next start must take its place rather than fail to bind."""
    handler, port = smtp
    socket_path = tmp_path / "lmtp.sock"
    service = ServiceUnderTest(tmp_path / "bot", sample_repo, port, sources=f'[sources.lmtp]\nsocket = "{socket_path}"\n')
    service.start()
    wait_for(socket_path.exists, 30, "the socket", service)
    service.kill()
    assert socket_path.exists()
    service.start()
    wait_for(lambda: "serve: started" in service.log_text().split("lmtp unix:")[-1], 30, "the restart", service)
    assert socket_path.stat().st_mode & 0o777 == 0o666  # the folder decides who may deliver
    with smtplib.LMTP(str(socket_path)) as client:
        client.sendmail("aur-dev-bounces@lists.archlinux.org", ["patchbot@patchbot.example.org"], _sample_mails()[0])
    wait_for(lambda: handler.messages, 120, "the reply", service)
    assert service.stop() == 0
    assert series_tags(handler) == ["1/v1"]


def test_serve_takes_mail_in_while_the_repository_is_unreachable_and_tests_once_it_is_back(smtp, tmp_path):
    if sandbox_available():
        pytest.skip(f"no sandbox here: {sandbox_available()}")
    handler, port = smtp
    repo = tmp_path / "not-yet" / "aurweb"
    service = ServiceUnderTest(tmp_path / "bot", repo, port)
    service.start()
    service.deliver(_sample_mails()[0])  # 250: stored, whatever git says
    wait_for(lambda: "tests wait: cannot prepare the repository yet" in service.log_text(), 30, "the warning", service)
    build_sample_repo(repo)
    wait_for(lambda: handler.messages, 120, "the reply once the repository is back", service)
    assert service.stop() == 0
    assert series_tags(handler) == ["1/v1"]


def test_two_services_on_one_database_answer_each_version_once(sample_repo, smtp, tmp_path):
    """Workers of two processes share the queue: claims keep them from testing or sending twice."""
    handler, port = smtp
    one = ServiceUnderTest(tmp_path / "one", sample_repo, port)
    two = ServiceUnderTest(tmp_path / "two", sample_repo, port)
    two.config.write_text(two.config.read_text().replace(str(two.db), str(one.db))
                          .replace(str(tmp_path / "two" / "work"), str(tmp_path / "one" / "work")))
    one.start()
    two.start()
    for index, data in enumerate(_sample_mails()):
        (one if index % 2 else two).deliver(data)
    wait_for(lambda: len(handler.messages) >= 7, 180, "seven replies", one)
    time.sleep(2)  # a duplicate would come now
    assert one.stop() == 0 and two.stop() == 0
    assert len(handler.messages) == 7
    assert Counter(series_tags(handler)) == {"1/v1": 1, "2/v1": 3, "3/v1": 1, "4/v1": 1, "5/v2": 1}


def test_serve_exits_4_naming_the_key_of_a_bad_config(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[sources.lmtp]\nport = 24\nsocket = \"/run/x\"\n")
    result = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), "--db", str(tmp_path / "p.db"),
                             "serve"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert "sources.lmtp: give either socket" in result.stderr


def test_serve_exits_1_when_its_lmtp_port_is_taken(sample_repo, smtp, tmp_path):
    _, port = smtp
    first = ServiceUnderTest(tmp_path / "one", sample_repo, port)
    first.start()
    second = ServiceUnderTest(tmp_path / "two", sample_repo, port, lmtp_port=first.lmtp_port)
    result = second.patchbot("serve")
    assert first.stop() == 0
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr
