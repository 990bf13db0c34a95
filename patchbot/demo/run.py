"""`patchbot demo`: the whole pipeline on the sample aur-dev mails, replies captured on loopback.

It builds the sample dual-stack project in a temporary folder, starts a real SMTP server on
127.0.0.1 (aiosmtpd) that keeps what it receives, ingests fixtures/mails/aur-dev-sample.mbox,
runs the pipeline until nothing is pending, and returns every reply: its whole header block as
the server received it (what a mail client threads by), then its text as a person reads it.
"""

from __future__ import annotations

import email
import logging
import socket
import tempfile
from contextlib import contextmanager
from email.policy import default
from pathlib import Path
from typing import Iterator

from aiosmtpd.controller import Controller

from patchbot.config.load import load_config
from patchbot.series.intake import take_in
from patchbot.service.pipeline import run_pending
from patchbot.text.render import render
from patchbot.demo.sample import SAMPLE_MAILS, build_sample_repo, write_sample_config
from patchbot.sources.files import source_for
from patchbot.store.database import Store
from patchbot.testing.run import clean_up_after_crash, secrets_of

log = logging.getLogger(__name__)
# aiosmtpd logs every SMTP command at INFO: the demo's reader wants the replies, not those.
logging.getLogger("mail.log").setLevel(logging.WARNING)


class CapturingHandler:
    """An aiosmtpd handler that keeps every message it is given, in arrival order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple[str, ...], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    # aiosmtpd cannot bind port 0 itself: take a free one from the kernel first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server(handler, port: int | None = None) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 (on `port`, else a free one); yields its port."""
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def run_demo(keep: Path | None = None) -> list[str]:
    """Run the demo; returns each captured reply rendered for reading."""
    with tempfile.TemporaryDirectory(prefix="patchbot-demo-") as scratch:
        folder = keep.resolve() if keep else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        handler = CapturingHandler()
        with smtp_server(handler) as port:
            log.info("demo: building the sample dual-stack project in %s", folder / "aurweb")
            repo = build_sample_repo(folder / "aurweb")
            config_path = write_sample_config(folder / "patchbot.toml", repo, folder / "work", folder / "patchbot.db", port)
            config = load_config(config_path)
            store = Store(config.db)
            clean_up_after_crash(config, config.work_dir)
            # As the list delivers them: one mail, then a pass of the pipeline, so that a
            # series is tested before its next version arrives.
            for raw in source_for(str(SAMPLE_MAILS)).mails():
                outcome = take_in(store, raw, config)
                log.info("demo: mail %s: %s", outcome.message_id, outcome.kind or outcome.status.value)
                run_pending(store, config, config.work_dir, secrets_of(config, config.db))
            store.close()
        return [reply_text(sender, recipients, data) for sender, recipients, data in handler.messages]


def reply_text(sender: str, recipients: tuple[str, ...], data: bytes) -> str:
    """One captured reply: the envelope, every header line as sent (folds and encoded words
    kept: a filtered, decoded set once hid In-Reply-To headers no client could thread by), and
    the text."""
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    message = email.message_from_bytes(data, policy=default)
    return render(
        "cli/demo-reply.txt", sender=sender, recipients=", ".join(recipients),
        header_lines=head.decode("utf-8", "replace").split("\n"),
        body=message.get_content(),
    )
