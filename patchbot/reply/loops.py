"""Never answer what could start a mail loop: our own mail, auto-submitted mail, bounces."""

from __future__ import annotations

from collections.abc import Callable

from patchbot.config.records import Config
from patchbot.mail.headers import address_of
from patchbot.store.records import MailFacts


def _our_own(mail: MailFacts, config: Config) -> bool:
    ours = address_of(config.mail.sender)
    return (ours is not None and mail.sender == ours.addr) or mail.message_id.endswith(f"@{config.mail.message_id_domain}>")


def _auto_submitted(mail: MailFacts, config: Config) -> bool:
    # RFC 3834: anything but "no" (parameters after ";" aside) was sent by a program.
    return (mail.auto_submitted or "no").split(";", 1)[0].strip().lower() != "no"


# Checked in order; the first that holds names the reason.
NEVER_ANSWER: tuple[tuple[str, Callable[[MailFacts, Config], bool]], ...] = (
    ("our own mail", _our_own),
    ("auto-submitted", _auto_submitted),
    ("a bounce", lambda mail, config: mail.bounce),
)


def reason_not_to_answer(mail: MailFacts, config: Config) -> str | None:
    for name, holds in NEVER_ANSWER:
        if holds(mail, config):
            return name
    return None
