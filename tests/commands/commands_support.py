"""Helpers of the command tests: the sample's first two series tested once, a copy per test,
command mails written as a mail client writes them, acknowledgements read from a real SMTP server."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path


from outbox.outbox_support import (  # the outbox tests' real SMTP server, config and bot
    LIST, REVIEW, Bot, Handler, message_id_of, parse, sample_mails, smtp_server, write_config,
)
from patchbot.intake import take_in
from patchbot.sources import RawMail

PHP_FIX = "<php-fix.0.git-send-email@example.org>"  # Kevin's patch: every suite passes
PY_PORT = "<py-maintainer.0.git-send-email@example.org>"  # Frédéric's patch: 1 new failure
LUKAS = "Lukas Fleischer <lukas@example.org>"  # the maintainer of the sample config
KEVIN = "Kevin Morris <kevin@example.org>"
EVE = "Eve Passerby <eve@example.net>"
_serial = itertools.count(1)


def command_mail(body: str, sender: str = LUKAS, parent: str = PHP_FIX, *, message_id: str | None = None,
                 headers: tuple[tuple[str, str], ...] = ()) -> RawMail:
    """A reply in a series' thread, as a mail client sends it to the list."""
    message_id = message_id or f"<command.{next(_serial)}@example.org>"
    head = [("From", sender), ("To", LIST), ("Subject", "Re: [PATCH] the series"), ("Date", "Mon, 11 May 2020 10:00:00 +0000"),
            ("Message-Id", message_id), ("In-Reply-To", parent), ("References", parent),
            ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=UTF-8"), *headers]
    text = "".join(f"{name}: {value}\n" for name, value in head) + "\n" + body
    return RawMail(text.encode(), "test")


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
            max_per_hour: int | None = None, require_dkim: bool = False) -> Bot:
    copy = folder / "patchbot.db"
    source, target = sqlite3.connect(db), sqlite3.connect(copy)
    source.backup(target)
    source.close(), target.close()
    path = write_config(folder, repo, port, db=copy)
    text = path.read_text()
    if push_url is not None:
        text = text.replace('default_branch = "master"\n', f'default_branch = "master"\npush_url = "{push_url}"\n')
    if require_dkim:
        text = text.replace("[commands]\n", "[commands]\nrequire_dkim = true\n")
    if max_per_hour is not None:
        text = text.replace("[commands]\n", f"[commands]\nmax_per_hour = {max_per_hour}\n")
    path.write_text(text)
    return Bot(path)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout
