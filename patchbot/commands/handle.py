"""Read every new reply in a series' thread for commands, act on them once, acknowledge in the thread.

A mail is claimed in the store before anything is done, and what came of it is stored in the
same transaction that queues its acknowledgement (under the key command/<Message-ID>): a mail
taken in twice, or a pass replayed after a crash, never acts twice. A mail whose handler died
half-way is not acted on again; its acknowledgement says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path

from patchbot.reply.audience import command_audience
from patchbot.commands.protocol import CommandContext, CommandOutcome, Status
from patchbot.commands.registry import all_commands
from patchbot.commands.authorize import AUTHOR, MAINTAINER, ROLES, Decision, authorize
from patchbot.commands.identity import freshness_refusal, identify
from patchbot.commands.parse import CommandLine, CommandText, commands_in_mail
from patchbot.config.records import Config
from patchbot.series.intake import set_aside_if_it_raises
from patchbot.reply.loops import reason_not_to_answer
from patchbot.mail.headers import formatted_address, message_ids_in
from patchbot.store.claims import CLAIMER, claimer_alive
from patchbot.reply.outbox import enqueue
from patchbot.text.render import render
from patchbot.reply.report import Reply, reply_subject
from patchbot.store.database import Store
from patchbot.store.records import MailRecord, SeriesRecord

log = logging.getLogger(__name__)

RATE_LIMIT = "rate-limit"
COMMANDS_STAGE = "handle commands"


def handle_new_commands(store: Store, config: Config, work: Path) -> Counter:
    """One pass: mails left half-handled by a crash, then every reply not read yet; counts by name."""
    counts: Counter = Counter()
    # A claim of our own left open counts too: only this loop reads commands in this process,
    # so it is one that the machine's trouble (a full disk) broke off in an earlier pass.
    for mail in store.interrupted_command_mails(lambda claimer: claimer != CLAIMER and claimer_alive(claimer)):
        with set_aside_if_it_raises(store, mail.id, mail.message_id, COMMANDS_STAGE):
            _finish(store, config, mail, {"interrupted": True}, render("commands/interrupted.txt"))
            counts["commands interrupted"] += 1
    for mail in store.unread_command_mails():
        with set_aside_if_it_raises(store, mail.id, mail.message_id, COMMANDS_STAGE):
            counts.update(handle_mail(store, config, work, mail))
    return counts


def handle_mail(store: Store, config: Config, work: Path, mail: MailRecord) -> Counter:
    facts, series = mail.facts, store.series(mail.series_id)
    sender = facts.sender.lower()
    raw = store.raw_mail(mail.id)
    quiet = reason_not_to_answer(facts, config)
    read = CommandText(()) if quiet else commands_in_mail(raw)
    lines = list(read.lines)
    if quiet and commands_in_mail(raw).lines:
        log.info("commands in %s not read: %s", mail.message_id, quiet)
    with store.transaction():
        used = store.commands_since(sender, datetime.now(timezone.utc) - timedelta(hours=1))
        if not store.claim_command_mail(mail.id, series.id, sender, len(lines), CLAIMER):
            return Counter()
        if not lines:
            store.finish_command_mail(mail.id, {"commands": [], "not read": quiet})
            return Counter({"replies read": 1})

    sender, refusal = _believed_sender(store, config, mail, raw, read)
    context = CommandContext(store, config, work, mail, sender)
    allowance = max(0, config.commands.max_per_hour - used)
    outcomes = [_outcome(context, series, line, refusal, index >= allowance) for index, line in enumerate(lines)]
    trusted = refusal is None and any(role in (MAINTAINER, AUTHOR) and holds(sender, series, config)
                                      for role, holds in ROLES)
    stored = {"commands": [[line.line, outcome.status.value, outcome.rule, outcome.text]
                           for line, outcome in zip(lines, outcomes)]}
    done = frozenset(line.verb for line, outcome in zip(lines, outcomes) if outcome.status is Status.DONE)
    with store.transaction():
        body = _acknowledgement(store, config, series, mail, lines, outcomes, trusted)
        _finish(store, config, mail, stored, body, done)
    counts = Counter(f"commands {outcome.status.value}" for outcome in outcomes)
    counts["acknowledgements queued"] += body is not None
    return counts


def _believed_sender(store: Store, config: Config, mail: MailRecord, raw: bytes,
                     read: CommandText) -> tuple[str, Decision | None]:
    """Whom the commands are from (identity.py), and the Decision refusing them all when they may
    not act: a sender that cannot be believed, an HTML twin that shows other text, a signed
    mail too old or acting a second time."""
    identity = identify(raw, mail, config, store)
    sender = identity.address or mail.facts.sender.lower()
    for rule, reason in (("identity", identity.refusal), ("html-twin", read.refusal)):
        if reason:
            return sender, Decision(False, rule, reason)
    reason = freshness_refusal(identity, mail, config, store)
    return sender, Decision(False, "replay", reason) if reason else None


def _outcome(context: CommandContext, series: SeriesRecord, line: CommandLine, refusal, over_limit: bool) -> CommandOutcome:
    commands = all_commands()
    if over_limit:
        return CommandOutcome.refused(
            f"more than {context.config.commands.max_per_hour} commands from you in an hour;"
            " commands are read again once the hour is over", RATE_LIMIT)
    command = commands.get(line.verb)
    if command is None:
        return CommandOutcome.ignored(f"patchbot has no command {line.verb!r}; \"patchbot: help\" lists them")
    decision = refusal or authorize(command.allowed, context.sender, series, context.config)
    if not decision.allowed:
        return CommandOutcome.refused(decision.reason, decision.rule)
    try:
        return command.run(context, series, line.args)
    except Exception as error:  # our own trouble: the acknowledgement says so, the next mail is read
        log.error("%s in %s: %s: %s", line.line, context.mail.message_id, type(error).__name__, error)
        return CommandOutcome.refused(f"it could not be done (a problem on patchbot's side: {error})", "error")


def _acknowledgement(store, config, series, mail, lines, outcomes, trusted) -> str | None:
    """The text to answer with, or None when no answer is due (a refusal or a note given already)."""
    if not any(outcome.status is Status.DONE for outcome in outcomes):
        if all(outcome.rule == RATE_LIMIT for outcome in outcomes):
            hour = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H")
            if not store.claim_notice(hour, mail.facts.sender.lower(), RATE_LIMIT):
                return None
        elif not trusted:
            # One polite refusal per thread and sender: a second one could start a conversation of bots.
            if not store.claim_notice(f"series-{series.id}", mail.facts.sender.lower(), "refused"):
                return None
            reasons = list(dict.fromkeys(outcome.text for outcome in outcomes if outcome.status is Status.REFUSED))
            return render("commands/refusal.txt", reasons=reasons)
    sections = {status: [{"line": line.line, "text": outcome.text}
                         for line, outcome in zip(lines, outcomes) if outcome.status is status] for status in Status}
    return render("commands/acknowledgement.txt", done=sections[Status.DONE], refused=sections[Status.REFUSED],
                  ignored=sections[Status.IGNORED])


def _finish(store: Store, config: Config, mail: MailRecord, stored: object, body: str | None,
            done: frozenset[str] = frozenset()) -> None:
    with store.transaction():
        store.finish_command_mail(mail.id, stored)
        if body is not None:
            enqueue(store, config, command_reply(store, config, mail, body, done))


def command_reply(store: Store, config: Config, mail: MailRecord, body: str, done: frozenset[str] = frozenset()) -> Reply:
    """The answer to a command mail, under it in the thread: To its sender, Cc the list when a
    verb `done` changes what the list sees (audience.command_audience)."""
    series = store.series(mail.series_id)
    head = BytesParser(policy=compat32).parsebytes(store.raw_mail(mail.id), headersonly=True)
    references = message_ids_in(head.get("References", "")) or ((mail.facts.in_reply_to,) if mail.facts.in_reply_to else ())
    commander = formatted_address(mail.facts.sender_name, mail.facts.sender)  # never raises on "jörg@..." (RFC 6532)
    audience = command_audience(config.mail.list_address, commander, mail.facts.sender, done)
    return Reply(
        key=f"command/{mail.message_id}",
        series_id=series.id,
        subject=reply_subject(mail.facts.subject or series.title),
        in_reply_to=mail.message_id,
        references=(*[ref for ref in references if ref != mail.message_id], mail.message_id),
        to=audience.to,
        cc=audience.cc,
        body=body,
        series_tag=f"{series.id}/v{series.version}",
    )
