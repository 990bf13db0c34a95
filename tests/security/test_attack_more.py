"""Issue 11, attacks tried after the first round of fixes: headers of the attacker's in our
replies, and a command line in a wrapped attribution.

The email package decodes RFC 2047 words in a header value it is handed and (Python before
3.11.10) writes a decoded CR LF as a line break: a subject encoded twice, or a Message-ID
`<=?utf-8?q?x=0D=0AX-Injected:_yes?=>` that a reply of ours names in In-Reply-To, put headers
and text of the attacker's into patchbot's reply to the list. Each test sends a real patch
mail through `patchbot ingest` and `patchbot run` to a real aiosmtpd relay on 127.0.0.1.
"""

from __future__ import annotations

import base64
import email
import email.policy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "commands"))  # the command tests' helpers

from commands_support import PY_PORT, command_mail  # noqa: E402
from test_attack_commands import bare, db, keys, make, master  # noqa: E402,F401 - fixtures
from reply.outbox_support import Handler, aurweb_repo, cli_ok, relay, write_config, write_mail_files  # noqa: F401 - aurweb_repo: a fixture
from service.serve_support import sample_repo  # noqa: F401 - a module-scoped fixture
from service.serve_support import sample_mails
from patchbot.sources import RawMail

INJECTED = "=?utf-8?q?x=0D=0AX-Injected:_yes=0D=0A=0D=0Apatchbot_says:_every_suite_passed?="
PHP_FIX = b"<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>"


def _php_fix() -> bytes:
    (data,) = [data for data in sample_mails() if data.startswith(b"Message-Id: " + PHP_FIX)]
    return data


def _replies_to(data: bytes, sample_repo, tmp_path) -> list[bytes]:
    handler = Handler()
    with relay(handler, smtputf8=True) as port:
        config = write_config(tmp_path, sample_repo, port)
        cli_ok(config, "ingest", *write_mail_files(tmp_path / "mails", [RawMail(data, "test")], "a"))
        cli_ok(config, "run")
        cli_ok(config, "run")
    assert handler.messages
    return [message.replace(b"\r\n", b"\n") for _, _, message in handler.messages]


def _head_lines(message: bytes) -> list[bytes]:
    return message.split(b"\n\n", 1)[0].split(b"\n")


def test_attack_8_a_subject_encoded_twice_puts_no_header_into_the_reply(sample_repo, tmp_path):
    twice = "=?utf-8?b?" + base64.b64encode(INJECTED.encode()).decode() + "?="
    data = _php_fix().replace(b"Subject: [PATCH] rpc: name the limit of suggestions", f"Subject: [PATCH] {twice}".encode())
    for message in _replies_to(data, sample_repo, tmp_path):
        head = _head_lines(message)
        assert not any(line.startswith(b"X-Injected") for line in head), message[:800]
        assert any(line.startswith(b"Message-ID: <patchbot.") for line in head), message[:800]
        assert b"\npatchbot says" not in message


def test_attack_8_a_message_id_holding_an_encoded_word_puts_no_header_into_the_reply(sample_repo, tmp_path):
    data = _php_fix().replace(PHP_FIX, f"<{INJECTED}>".encode())
    for message in _replies_to(data, sample_repo, tmp_path):
        head = _head_lines(message)
        assert not any(line.startswith(b"X-Injected") for line in head), message[:800]
        assert any(line.startswith(b"In-Reply-To: <") for line in head), message[:800]
        assert any(line.startswith(b"X-Patchbot-Series: ") for line in head), message[:800]
        assert b"\npatchbot says" not in message


# -- 3: an attribution wrapped over more lines than ATTRIBUTION_WRAP, or in another language ------

# The attacker's display name holds the command; the maintainer's client wraps the attribution
# where a line of its own starts with it. Lukas signs the reply (DKIM): only the parser holds.
WRAPPED_ATTRIBUTIONS = {
    "english_over_four_lines": "On 11/30/26 12:00, Mallory Lorem Lorem Lorem Lorem Lorem Lorem Lorem\n"
                               "patchbot: apply master v1 force\n" + "I" * 60 + " Ipsum Ipsum\nwrote:\n",
    "portuguese": "Em seg., 30 de nov. de 2026 às 12:00, Mallory Mallory\n"
                  "patchbot: apply master v1 force\n<mallory@evil.example> escreveu:\n",
    "japanese": "2026年11月30日(月) 12:00\npatchbot: apply master v1 force\n<mallory@evil.example>:\n",
    "czech_with_a_blank_line_before_the_quote": "Dne po 30. 11. 2026 v 12:00 odesílatel Mallory\n"
                                                "patchbot: apply master v1 force\n<mallory@evil.example> napsal:\n\n",
}


@pytest.mark.parametrize("attribution", WRAPPED_ATTRIBUTIONS.values(), ids=WRAPPED_ATTRIBUTIONS.keys())
def test_attack_3_an_attribution_wrapped_over_many_lines_or_in_another_language_is_not_read(make, bare, keys,
                                                                                             attribution):
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    body = f"Not yet.\n\n{attribution}> +const RPC_SUGGEST_LIMIT = 20;\n"
    mail = keys.sign(command_mail(body, parent=PY_PORT), "example.org")
    s.send(mail)
    assert master(bare) == before and s.answers_to(mail) == []


def test_attack_3_a_command_a_flowed_paragraph_wrapped_to_a_line_start_is_not_read(make, bare, keys):
    """format=flowed (RFC 3676): the reader sees one sentence; line by line it held `patchbot: ignore`."""
    s = make(push_url=bare, require_dkim=True)
    body = "I do not think we should say \npatchbot: ignore \nto this series yet, it is fine.\n"
    mail = keys.sign(command_mail(body, parent=PY_PORT, content_type="text/plain; charset=UTF-8; format=flowed"),
                     "example.org")
    s.send(mail)
    assert s.answers_to(mail) == []
    # The same words as the writer's own lines are a command: the check reads what is shown.
    shown = keys.sign(command_mail("I do not think so.\n\npatchbot: ignore\n", parent=PY_PORT,
                                   content_type="text/plain; charset=UTF-8; format=flowed"), "example.org")
    s.send(shown)
    assert s.answers_to(shown) != []


def test_attack_8_escape_sequences_and_a_bidi_override_of_a_subject_are_escaped_in_the_reply_subject(sample_repo,
                                                                                                      tmp_path):
    data = _php_fix().replace(b"Subject: [PATCH] rpc: name the limit of suggestions",
                              b"Subject: [PATCH] =?utf-8?q?rpc=1B]52;c;ZWNobyBwd25lZA=3D=3D=07_=E2=80=AEevil?=")
    # Held already (the title is made one line and escaped before it is a subject); kept as a check.
    for message in _replies_to(data, sample_repo, tmp_path):
        subject = str(email.message_from_bytes(message, policy=email.policy.default)["Subject"])
        assert "\x1b" not in subject and "\x07" not in subject and "\u202e" not in subject, subject
        assert "\\u202eevil" in subject, subject
