"""Group parsed mails into series and versions.

A patch or cover letter joins the series its thread points to (its own Message-ID, then
In-Reply-To, then References, closest first), else an unthreaded series by the same sender,
version and total from the last 20 minutes, else it starts a series. A number already taken
starts a new series. A higher version in the thread of an older one is its re-roll; one sent
in reply to the same-numbered patch of the older version is a partial re-roll and inherits
the patches it does not replace. Versions are also linked by `Supersedes: <msgid>` and by
the same normalised title and sender; older versions become obsolete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from patchbot.mail import Kind, ParsedMail
from patchbot.mail.headers import message_ids_in
from patchbot.store import SeriesRecord, Store

UNTHREADED_WINDOW = timedelta(minutes=20)


@dataclass(frozen=True)
class Filing:
    """Where a mail was filed: its final kind, the series (if any) and the rule that decided."""

    kind: Kind
    series_id: int | None
    rule: str


def file_mail(store: Store, mail_id: int, mail: ParsedMail, received_at: datetime | None = None) -> Filing:
    """File a stored, parsed mail into its series (creating or re-rolling one as needed)."""
    if mail.kind in (Kind.PATCH, Kind.COVER):
        return _file_series_mail(store, mail_id, mail, mail.date or received_at or datetime.now(timezone.utc))
    series = store.series_by_thread((mail.message_id, *mail.thread_ids))
    if series is None:
        return Filing(mail.kind, None, "not-in-a-known-thread")
    store.attach_to_series(mail_id, series.id)
    # Replies to this reply belong to the same thread.
    store.remember_thread_ids(series.id, (mail.message_id,))
    return Filing(mail.kind, series.id, "in-series-thread")


def _file_series_mail(store: Store, mail_id: int, mail: ParsedMail, date: datetime) -> Filing:
    number = 0 if mail.kind is Kind.COVER else (mail.subject.counter or 1)
    total = mail.subject.total if mail.subject.counter is not None else (1 if mail.kind is Kind.PATCH else None)
    version = mail.subject.version

    own = store.series_by_thread((mail.message_id,))
    thread = own or store.series_by_thread(mail.thread_ids)
    if thread is not None and own is None and mail.kind is Kind.PATCH and mail.subject.counter is None \
            and version <= thread.version:
        # An unnumbered patch posted into a known thread is part of the discussion.
        store.attach_to_series(mail_id, thread.id)
        store.remember_thread_ids(thread.id, (mail.message_id,))
        return Filing(Kind.REPLY, thread.id, "unnumbered-patch-in-thread")

    series, rule = None, "new-series"
    if thread is not None and thread.version == version:
        if _slot_free(thread, number, mail_id) and _totals_agree(thread.total, total):
            series, rule = thread, "thread"
        else:
            rule = "number-taken-new-series"
    elif thread is not None and version > thread.version:
        series, rule = _reroll(store, thread, mail, number, total, date)
    else:
        series = _unthreaded_match(store, mail, number, total, version, date)
        rule = "same-sender-within-20-minutes" if series else rule

    if series is None:
        series_id = store.add_series(
            title=mail.subject.title, normalised_title=mail.subject.normalised_title,
            author=mail.sender.addr, author_name=mail.sender.name, version=version, total=total, date=date,
        )
        if rule.startswith("reroll"):
            store.link_versions(series_id, thread.id)
            if rule == "reroll-partial":
                _inherit_patches(store, series_id, thread, number)
    else:
        series_id = series.id

    _place(store, series_id, mail_id, mail, number, total, date)
    store.remember_thread_ids(series_id, (mail.message_id, *mail.thread_ids))
    _link_earlier_version(store, store.series(series_id), mail)
    return Filing(mail.kind, series_id, rule)


def _slot_free(series: SeriesRecord, number: int, mail_id: int) -> bool:
    if number == 0:
        return series.cover_mail_id in (None, mail_id)
    slot = series.slot(number)
    return slot is None or slot.inherited or slot.mail_id == mail_id


def _totals_agree(known: int | None, total: int | None) -> bool:
    return known is None or total is None or known == total


def _reroll(store, older: SeriesRecord, mail: ParsedMail, number: int, total, date):
    """A higher version sent into an older version's thread: join its re-roll or start one."""
    for candidate in store.rerolls_of(older.id, mail.subject.version, mail.sender.addr):
        if _slot_free(candidate, number, -1) and _totals_agree(candidate.total, total):
            return candidate, "reroll-thread"
    replaced = older.slot(number) if number else None
    if replaced is not None and mail.in_reply_to == replaced.message_id and _totals_agree(older.total, total):
        return None, "reroll-partial"
    return None, "reroll-in-thread"


def _inherit_patches(store: Store, series_id: int, older: SeriesRecord, replaced: int) -> None:
    for slot in older.patches:
        if slot.number != replaced:
            store.put_patch(series_id, slot.number, slot.mail_id, inherited=True)
    store.update_series(series_id, cover_mail_id=older.cover_mail_id, title=older.title,
                        normalised_title=older.normalised_title)


def _unthreaded_match(store, mail: ParsedMail, number: int, total, version: int, date: datetime):
    """git send-email without threading: same sender, version and total, close in time."""
    if total is None or total == 1:
        return None
    for candidate in store.recent_series_of(
        mail.sender.addr, version, total, date - UNTHREADED_WINDOW, date + UNTHREADED_WINDOW
    ):
        if _slot_free(candidate, number, -1):
            return candidate
    return None


def _place(store: Store, series_id: int, mail_id: int, mail: ParsedMail, number: int, total, date) -> None:
    series = store.series(series_id)
    lowest = min((slot.number for slot in series.patches), default=None)
    names_series = number == 0 or (series.cover_mail_id is None and (lowest is None or number <= lowest))
    if number == 0:
        store.update_series(series_id, cover_mail_id=mail_id, total=total, date=date,
                            title=mail.subject.title, normalised_title=mail.subject.normalised_title)
    else:
        store.put_patch(series_id, number, mail_id)
        store.update_series(
            series_id, total=total, date=date,
            title=mail.subject.title if names_series else None,
            normalised_title=mail.subject.normalised_title if names_series else None,
        )
    store.attach_to_series(mail_id, series_id)


def _link_earlier_version(store: Store, series: SeriesRecord, mail: ParsedMail) -> None:
    """Link a re-roll to the version it replaces, once its title or Supersedes: is known."""
    if series.supersedes_id is not None:
        return
    for value in mail.trailer_values("Supersedes"):
        for message_id in message_ids_in(value) or (f"<{value.strip('<> ')}>",):
            older = store.series_of_mail(message_id)
            if older is not None and older.id != series.id:
                store.link_versions(series.id, older.id)
                return
    if series.version > 1:
        earlier = store.earlier_versions(series.author, series.normalised_title, series.version, series.id)
        if earlier:
            store.link_versions(series.id, earlier[0].id)
