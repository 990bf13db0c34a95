"""Sending the outbox over an encrypted, authenticated SMTP session: STARTTLS, TLS on connect, AUTH.

Every test runs a real aiosmtpd server on 127.0.0.1 and sends one reply composed here by hand
(no pipeline, no sandbox): a Store in tmp_path, patchbot.reply.outbox.enqueue, then send_due.

Certificates: the server's is a self-signed one made for 127.0.0.1 (CN and an IP
subjectAltName) by `openssl req -x509` once per module. patchbot has no option for a CA file
([smtp] knows host, port, security, username, password_file, ...): it calls aiosmtplib.send with
its default validate_certs=True, and aiosmtplib builds its context with
ssl.create_default_context(), which loads OpenSSL's default verify paths; OpenSSL reads those from
the environment variables SSL_CERT_FILE / SSL_CERT_DIR at that moment. So the client is made to
trust the test certificate by pointing SSL_CERT_FILE at it (monkeypatch: only for the test), and
a control test shows that without it the server is not trusted (verification is really on).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import ssl
import subprocess
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from patchbot.config.records import Config
from patchbot.demo.run import free_port
from patchbot.reply.outbox import Delivery, enqueue, send_due
from patchbot.reply.report import Reply
from patchbot.store.database import Store

SENDER = "patchbot <patchbot@patchbot.example.org>"
LIST = "aur-dev@lists.example.org"
AUTHOR = "author@example.org"
USERNAME = "patchbot-sender"
PASSWORD = "s3cret-Pa55word-xyzzy"
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)


# -- certificate, server ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # verify_mode CERT_NONE: no client certs
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 (the cryptography package is not in the venv)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return Certificate(cert, key)


@pytest.fixture
def trust(monkeypatch, certificate):
    """Make the client (aiosmtplib's default context) trust the test certificate, and only it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


class Recorder:
    """An aiosmtpd handler that accepts everything and notes how each mail came in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mail_commands = 0
        # (session.ssl, TLS version of the transport, session.authenticated, login, envelope, data)
        self.messages: list[dict] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_commands += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        ssl_object = server.transport.get_extra_info("ssl_object")
        with self.lock:
            self.messages.append({
                "session_ssl": session.ssl,  # set by aiosmtpd after STARTTLS only
                "tls_version": ssl_object.version() if ssl_object is not None else None,
                "authenticated": session.authenticated,
                "login": session.auth_data.login if session.auth_data is not None else None,
                "mail_from": envelope.mail_from,
                "rcpt_tos": tuple(envelope.rcpt_tos),
                "data": envelope.content,
            })
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == USERNAME.encode() and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@contextmanager
def smtp_server(handler: Recorder, **kwargs) -> Iterator[int]:
    """A real aiosmtpd server on 127.0.0.1 with the SMTP/Controller options given; yields its port."""
    port = free_port()  # aiosmtpd cannot bind port 0
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


# -- patchbot's side --------------------------------------------------------------------------


def queue_reply(store: Store, config: Config, key: str = "smtp-security/1") -> str:
    """One reply in the outbox, made by hand; its Message-ID."""
    reply = Reply(
        key=key, series_id=None, subject="Re: [PATCH] fix the thing", in_reply_to="<patch.0@example.org>",
        references=("<patch.0@example.org>",), to=(LIST,), cc=(AUTHOR,), body="All suites passed.\n",
        series_tag="1/v1",
    )
    assert enqueue(store, config, reply)
    (row,) = store.replies()
    return row.message_id


def config_for(port: int, security: str, tmp_path: Path | None = None, password: str | None = None,
               **smtp) -> Config:
    base = Config()
    extra = {}
    if password is not None:
        password_file = tmp_path / "smtp-password"
        password_file.write_text(password + "\n")
        extra = {"username": USERNAME, "password_file": password_file}
    return dataclasses.replace(
        base,
        mail=dataclasses.replace(base.mail, sender=SENDER, message_id_domain="patchbot.example.org"),
        smtp=dataclasses.replace(base.smtp, host="127.0.0.1", port=port, security=security, timeout_s=5.0,
                                 retry_base_s=0.05, **extra, **smtp),
    )


def row_of(store: Store):
    (row,) = store.replies()
    return row


# -- tests ------------------------------------------------------------------------------------


def test_starttls_delivers_over_tls(store, trust, certificate, tmp_path):
    handler = Recorder()
    with smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True) as port:
        config = config_for(port, "starttls")
        message_id = queue_reply(store, config)
        outcomes = send_due(store, config)
    assert [outcome.result for outcome in outcomes] == [Delivery.SENT], outcomes
    row = row_of(store)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    (message,) = handler.messages
    assert message["session_ssl"] is not None  # the server saw the STARTTLS upgrade
    assert message["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert message["mail_from"] == "patchbot@patchbot.example.org"
    assert message["rcpt_tos"] == (LIST, AUTHOR)
    assert f"Message-ID: {message_id}".encode() in message["data"]


def test_starttls_to_an_untrusted_certificate_is_not_sent(store, certificate, monkeypatch):
    # The control for SSL_CERT_FILE above: without it the self-signed certificate is refused,
    # so patchbot does verify the server (aiosmtplib's validate_certs=True).
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    handler = Recorder()
    with smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True) as port:
        config = config_for(port, "starttls")
        queue_reply(store, config)
        outcomes = send_due(store, config)
    assert [outcome.result for outcome in outcomes] == [Delivery.RETRY], outcomes
    assert "CERTIFICATE_VERIFY_FAILED" in outcomes[0].detail or "certificate verify failed" in outcomes[0].detail
    assert handler.mail_commands == 0 and handler.messages == []
    assert row_of(store).status == "pending"


def test_implicit_tls_delivers(store, trust, certificate):
    handler = Recorder()
    # aiosmtpd's Controller(ssl_context=...) wraps the listening socket: TLS from the first byte.
    with smtp_server(handler, ssl_context=certificate.server_context()) as port:
        config = config_for(port, "tls")
        message_id = queue_reply(store, config)
        outcomes = send_due(store, config)
    assert [outcome.result for outcome in outcomes] == [Delivery.SENT], outcomes
    assert (row_of(store).status, row_of(store).attempts) == ("sent", 1)
    (message,) = handler.messages
    assert message["session_ssl"] is None  # no STARTTLS happened...
    assert message["tls_version"] in ("TLSv1.2", "TLSv1.3")  # ...the connection was TLS throughout
    assert f"Message-ID: {message_id}".encode() in message["data"]


def _secret_forms() -> list[str]:
    """The password as it could leak: itself, and as AUTH PLAIN / AUTH LOGIN send it."""
    return [
        PASSWORD,
        base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode(),
        base64.b64encode(PASSWORD.encode()).decode(),
    ]


def _client_log(caplog) -> str:
    # The aiosmtpd server runs in this process too and logs what it reads ("mail.log", at DEBUG,
    # including the AUTH lines): that is the test server's log, not patchbot's; leave it out.
    return "\n".join(record.getMessage() for record in caplog.records if record.name != "mail.log")


def _auth_server(handler: Recorder, certificate: Certificate):
    return smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True,
                       authenticator=authenticator, auth_require_tls=True, auth_required=True)


def test_auth_over_starttls_logs_in_with_the_password_file(store, trust, certificate, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    handler = Recorder()
    with _auth_server(handler, certificate) as port:
        config = config_for(port, "starttls", tmp_path, password=PASSWORD)
        queue_reply(store, config)
        outcomes = send_due(store, config)
    assert [outcome.result for outcome in outcomes] == [Delivery.SENT], outcomes
    (message,) = handler.messages
    assert message["session_ssl"] is not None
    assert message["authenticated"] is True and message["login"] == USERNAME.encode()
    row = row_of(store)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    log_text = _client_log(caplog)
    assert "sent " in log_text
    assert not any(secret in log_text for secret in _secret_forms())


def test_a_wrong_password_fails_at_once_without_leaking_it(store, trust, certificate, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-Pa55word-plugh"
    handler = Recorder()
    with _auth_server(handler, certificate) as port:
        config = config_for(port, "starttls", tmp_path, password=wrong)
        queue_reply(store, config)
        outcomes = send_due(store, config)
        # 535 is permanent: not deferred, so never tried again, however late it gets.
        assert send_due(store, config, now=FAR_FUTURE) == []
    assert [outcome.result for outcome in outcomes] == [Delivery.FAILED], outcomes
    assert handler.mail_commands == 0 and handler.messages == []
    row = row_of(store)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("535"), row.last_error
    assert "Authentication credentials invalid" in row.last_error
    log_text = _client_log(caplog)
    assert "could not send smtp-security/1: 535" in log_text
    forms = [wrong, base64.b64encode(f"\0{USERNAME}\0{wrong}".encode()).decode(),
             base64.b64encode(wrong.encode()).decode()]
    for text in (row.last_error, outcomes[0].detail, log_text):
        assert not any(secret in text for secret in forms), text


def test_starttls_asked_of_a_server_without_it_sends_nothing_in_clear(store, tmp_path, caplog):
    # A plain-text server (no tls_context: no STARTTLS in its EHLO) and security = "starttls":
    # aiosmtplib raises "SMTP STARTTLS extension not supported by server." before MAIL FROM, so
    # nothing goes in clear text. patchbot counts it as a temporary failure (any SMTPException
    # that is not a response code is): deferred with backoff until max_attempts, then held
    # (tried every hour, never in clear).
    caplog.set_level(logging.DEBUG)
    handler = Recorder()
    with smtp_server(handler) as port:
        config = config_for(port, "starttls", tmp_path, password=PASSWORD, max_attempts=2)
        queue_reply(store, config)
        first = send_due(store, config)
        assert [outcome.result for outcome in first] == [Delivery.RETRY], first
        assert "STARTTLS extension not supported" in first[0].detail
        row = row_of(store)
        assert (row.status, row.attempts) == ("pending", 1)
        assert "STARTTLS extension not supported" in row.last_error
        second = send_due(store, config, now=FAR_FUTURE)
        row = row_of(store)
        assert (row.status, row.attempts) == ("held", 2)
        third = send_due(store, config, now=FAR_FUTURE)  # held: tried again, still not in clear
    assert "STARTTLS extension not supported" in second[0].detail
    assert [outcome.result for outcome in third] == [Delivery.RETRY]
    row = row_of(store)
    assert (row.status, row.attempts) == ("held", 3)
    assert "STARTTLS extension not supported" in row.last_error
    assert handler.mail_commands == 0 and handler.messages == []  # not even MAIL FROM in clear
    log_text = _client_log(caplog)
    assert "STARTTLS extension not supported" in log_text
    assert not any(secret in log_text + row.last_error for secret in _secret_forms())


def test_the_outcome_of_a_reply_past_the_window_says_it_waits(store, tmp_path):
    handler = Recorder()
    with smtp_server(handler) as port:  # no STARTTLS offered: a temporary failure each time
        config = config_for(port, "starttls", max_attempts=1)
        queue_reply(store, config)
        outcomes = send_due(store, config)
    assert row_of(store).status == "held"
    assert [outcome.result for outcome in outcomes] == [Delivery.RETRY], outcomes
