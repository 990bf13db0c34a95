"""Helpers of the command tests: the sample's first two series tested once, a copy per test,
command mails written as a mail client writes them, acknowledgements read from a real SMTP server."""

from __future__ import annotations

import base64
import itertools
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path


from reply.outbox_support import (  # the outbox tests' real SMTP server, config and bot
    LIST, REVIEW, Bot, Handler, message_id_of, parse, sample_mails, smtp_server, write_config,
)
from patchbot.series.intake import take_in
from patchbot.sources import RawMail

PHP_FIX = "<eecb1bf90a5fe1c18399bcf9e2ccdfdcbbb76540.1588582800.git.kevin.morris@archlinux.org>"  # Kevin's patch: every suite passes
PY_PORT = "<291a64ed83cadbe85faf018306428c8a67fbb503.1588680000.git.frederic.mangano@archlinux.org>"  # Frédéric's patch: 1 new failure
LUKAS = "Lukas Fleischer <lukas@example.org>"  # the maintainer of the sample config
KEVIN = "Kevin Morris <kevin@example.org>"
EVE = "Eve Passerby <eve@example.net>"
_serial = itertools.count(1)


def command_mail(body: str, sender: str = LUKAS, parent: str = PHP_FIX, *, message_id: str | None = None,
                 headers: tuple[tuple[str, str], ...] = (), date: str | None = None,
                 content_type: str = "text/plain; charset=UTF-8") -> RawMail:
    """A reply in a series' thread, as a mail client sends it to the list (dated now)."""
    message_id = message_id or f"<command.{next(_serial)}@example.org>"
    head = [("From", sender), ("To", LIST), ("Subject", "Re: [PATCH] the series"), ("Date", date or formatdate()),
            ("Message-Id", message_id), ("In-Reply-To", parent), ("References", parent),
            ("MIME-Version", "1.0"), ("Content-Type", content_type), *headers]
    text = "".join(f"{name}: {value}\n" for name, value in head) + "\n" + body
    return RawMail(text.encode(), "test")


def make_key(folder: Path, name: str, bits: int = 2048) -> tuple[bytes, bytes]:
    """A private key in PEM and its DNS TXT record (v=DKIM1; k=rsa; p=...)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise AssertionError("openssl is needed to make the test keys (Debian package openssl)")
    private = folder / f"{name}.pem"
    subprocess.run([openssl, "genrsa", "-out", str(private), str(bits)], check=True, capture_output=True)
    public = subprocess.run(
        [openssl, "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return private.read_bytes(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)



# What a mail provider's signer covers: every header patchbot reads, and To.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references")


class DkimKeys:
    """Signing keys of a few mail domains, made with openssl, and their public keys served to
    patchbot as DNS would: there is no DNS server here, so the lookup patchbot.commands.dkim
    hands to dkimpy's dnsfunc hook is replaced by these records (and nothing else is)."""

    def __init__(self, folder: Path, domains: tuple[str, ...]) -> None:
        self.private: dict[str, bytes] = {}
        self.records: dict[bytes, bytes] = {}
        for domain in domains:
            self.private[domain], record = make_key(folder, domain)
            self.records[b"s1._domainkey." + domain.encode() + b"."] = record

    def serve(self, monkeypatch) -> None:
        import patchbot.commands.dkim

        monkeypatch.setattr(patchbot.commands.dkim, "_dns_lookup", self.records.get)

    def sign(self, mail: RawMail, domain: str, headers: tuple[bytes, ...] = SIGNED_HEADERS) -> RawMail:
        """The mail with a DKIM-Signature of `domain` on top, as its provider's MTA sends it."""
        import dkim

        signature = dkim.sign(mail.data, b"s1", domain.encode(), self.private[domain], include_headers=list(headers))
        return RawMail(signature + mail.data, mail.origin)


@dataclass
class Session:
    """patchbot on a copy of the tested database, replying to a fresh SMTP server."""

    bot: Bot
    handler: Handler
    folder: Path

    def send(self, *mails: RawMail) -> dict[str, int]:
        """Take the mails in (as the list delivers them) and run one pass."""
        for raw in mails:
            take_in(self.bot.store, raw)
        return self.bot.run()

    def answers_to(self, mail: RawMail) -> list:
        message_id = message_id_of(mail.data)
        return [parse(data) for _, _, data in self.handler.messages if str(parse(data)["In-Reply-To"]) == message_id]

    def answer_to(self, mail: RawMail) -> str:
        """The one acknowledgement of a command mail, its body with LF line ends."""
        answers = self.answers_to(mail)
        assert len(answers) == 1, [answer.get_content() for answer in answers]
        return answers[0].get_content().replace("\r\n", "\n")

    def results_in(self, thread: str) -> list[str]:
        """Test results sent in a series' thread during this session."""
        return [parse(data).get_content().replace("\r\n", "\n") for _, _, data in self.handler.messages
                if str(parse(data)["In-Reply-To"]) == thread]


def build_tested_db(repo: Path, folder: Path) -> Path:
    """A database where the PHP fix and the Python port were tested and answered, and Lukas's
    review of the PHP fix (Reviewed-by) is in."""
    wanted = {PHP_FIX, PY_PORT, REVIEW}
    handler = Handler()
    with smtp_server(handler) as port:
        bot = Bot(write_config(folder, repo, port))
        bot.feed([raw for raw in sample_mails() if message_id_of(raw.data) in wanted])
        bot.close()
    assert len(handler.messages) == 2
    return folder / "patchbot.db"


def session(db: Path, repo: Path, folder: Path, port: int, push_url: Path | None = None,
            max_per_hour: int | None = None, require_dkim: bool | None = False) -> Bot:
    """patchbot on a copy of `db`; require_dkim None leaves the setting out (the default holds)."""
    copy = folder / "patchbot.db"
    source, target = sqlite3.connect(db), sqlite3.connect(copy)
    source.backup(target)
    source.close(), target.close()
    path = write_config(folder, repo, port, db=copy)
    text = path.read_text()
    if push_url is not None:
        text = text.replace('default_branch = "master"\n', f'default_branch = "master"\npush_url = "{push_url}"\n')
    assert "\nrequire_dkim = false\n" in text, "the sample config's [commands] changed"
    setting = "" if require_dkim is None else f"require_dkim = {'true' if require_dkim else 'false'}\n"
    text = text.replace("\nrequire_dkim = false\n", "\n" + setting)
    if max_per_hour is not None:
        text = text.replace("[commands]\n", f"[commands]\nmax_per_hour = {max_per_hour}\n")
    path.write_text(text)
    return Bot(path)


@contextmanager
def session_maker(db: Path, repo: Path, folder: Path) -> Iterator[Callable[..., Session]]:
    """start(**options of session()) -> Session: a copy of the tested database and a fresh SMTP
    server each; all closed on leaving."""
    opened = []

    def start(**options) -> Session:
        handler = Handler()
        server = smtp_server(handler)
        port = server.__enter__()
        bot = session(db, repo, folder, port, **options)
        opened.append((bot, server))
        return Session(bot, handler, folder)

    try:
        yield start
    finally:
        for bot, server in opened:
            bot.close()
            server.__exit__(None, None, None)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout
