"""Group parsed mails into series and versions.

A patch or cover letter joins the series its thread points to (its own Message-ID, then
In-Reply-To, then References, closest first), else an unthreaded series by the same sender,
version and total from the last 20 minutes, else it starts a series. A number already taken
starts a new series. A higher version in the thread of an older one is its re-roll; one sent
in reply to the same-numbered patch of the older version is a partial re-roll and inherits
the patches it does not replace. Versions are also linked by `Supersedes: <msgid>` and by
the same normalised title and sender; older versions become obsolete.

Only the series' own sender (the author the mail parser resolved) may add to a series,
re-roll it or supersede it, and a maintainer whose mail passes the command check (DKIM where
required); anyone else's patch in its thread starts a series of its own, which replies in
the thread with its own result. Anyone on the list can post into a thread: a stranger's
`[PATCH v2 2/2]` in reply to Vera's 2/2 once became Vera's v2, made her v1 obsolete and
got "v2 of this series ... every suite passed" posted in her thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from patchbot.commands.identity import identify
from patchbot.config import Config
from patchbot.mail import Kind, ParsedMail
from patchbot.mail.headers import message_ids_in
from patchbot.store import SeriesRecord, Store

UNTHREADED_WINDOW = timedelta(minutes=20)

# Whether the sender of the mail being filed may act on another sender's series as on their
# own; asked only when that matters (it may check a DKIM signature).
Vouch = Callable[[SeriesRecord], bool]


def nobody(series: SeriesRecord) -> bool:
    return False


def maintainer_vouch(config: Config | None, store: Store, mail_id: int, raw: bytes) -> Vouch:
    """A maintainer of the config, as far as the mail (stored as `mail_id`) can be believed to come
    from one: the check a command passes (identity.py: DKIM where required, and signed headers
    that name the thread of the series acted on)."""
    if config is None or not config.commands.maintainers:
        return nobody

    def vouched(series: SeriesRecord) -> bool:
        record = replace(store.mail_by_id(mail_id), series_id=series.id)
        return identify(raw, record, config, store).address in config.commands.maintainers
    return vouched


@dataclass(frozen=True)
class Filing:
    """Where a mail was filed: its final kind, the series (if any) and the rule that decided."""

    kind: Kind
    series_id: int | None
    rule: str


def file_mail(store: Store, mail_id: int, mail: ParsedMail, received_at: datetime | None = None,
              vouched: Vouch = nobody) -> Filing:
    """File a stored, parsed mail into its series (creating or re-rolling one as needed)."""
    if mail.kind in (Kind.PATCH, Kind.COVER):
        answers: dict[int, bool] = {}

        def owns(series: SeriesRecord) -> bool:
            if series.author == mail.sender.addr:
                return True
            if series.id not in answers:
                answers[series.id] = vouched(series)
            return answers[series.id]
        return _file_series_mail(store, mail_id, mail, mail.date or received_at or datetime.now(timezone.utc), owns)
    series = store.series_by_thread((mail.message_id, *mail.thread_ids))
    if series is None:
        return Filing(mail.kind, None, "not-in-a-known-thread")
    store.attach_to_series(mail_id, series.id)
    # Replies to this reply belong to the same thread.
    store.remember_thread_ids(series.id, (mail.message_id,))
    return Filing(mail.kind, series.id, "in-series-thread")


def _file_series_mail(store: Store, mail_id: int, mail: ParsedMail, date: datetime,
                      owns: Callable[[SeriesRecord], bool]) -> Filing:
    number = 0 if mail.kind is Kind.COVER else (mail.subject.counter or 1)
    total = mail.subject.total if mail.subject.counter is not None else (1 if mail.kind is Kind.PATCH else None)
    version = mail.subject.version

    along = store.series_along_thread((mail.message_id, *mail.thread_ids))
    id_known = bool(along) and along[0][0] == mail.message_id
    if along and not id_known and mail.kind is Kind.PATCH and mail.subject.counter is None \
            and version <= along[0][1].version:
        # An unnumbered patch posted into a known thread is part of the discussion.
        discussed = along[0][1]
        store.attach_to_series(mail_id, discussed.id)
        store.remember_thread_ids(discussed.id, (mail.message_id,))
        return Filing(Kind.REPLY, discussed.id, "unnumbered-patch-in-thread")

    # The closest series of the thread that this sender may add to, re-roll or supersede.
    thread = next((candidate for _, candidate in along if owns(candidate)), None)
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
        if series:
            rule = "same-sender-within-20-minutes"
        elif along and thread is None:
            rule = "other-senders-thread-new-series"

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
    store.claim_own_thread_id(series_id, mail.message_id)
    store.remember_thread_ids(series_id, mail.thread_ids)
    _link_earlier_version(store, store.series(series_id), mail, owns)
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


def _link_earlier_version(store: Store, series: SeriesRecord, mail: ParsedMail,
                          owns: Callable[[SeriesRecord], bool]) -> None:
    """Link a re-roll to the version it replaces, once its title or Supersedes: is known.
    A Supersedes: naming another sender's series is not obeyed (unless a maintainer sent it)."""
    if series.supersedes_id is not None:
        return
    for value in mail.trailer_values("Supersedes"):
        for message_id in message_ids_in(value) or (f"<{value.strip('<> ')}>",):
            older = store.series_of_mail(message_id)
            if older is not None and older.id != series.id and owns(older):
                store.link_versions(series.id, older.id)
                return
    if series.version > 1:
        earlier = store.earlier_versions(series.author, series.normalised_title, series.version, series.id)
        if earlier:
            store.link_versions(series.id, earlier[0].id)


def sent_in_thread_of(store: Store, series: SeriesRecord, thread_ids: tuple[str, ...]) -> SeriesRecord | None:
    """Another sender's series in whose thread `series` was sent (`thread_ids`: its first mail's,
    closest first), when `series` is not a version of it: its reply must say it is separate."""
    replaced = set()
    older = series
    while older is not None and older.supersedes_id is not None and older.supersedes_id not in replaced:
        replaced.add(older.supersedes_id)
        older = store.series(older.supersedes_id)
    for _, other in store.series_along_thread(thread_ids):
        if other.id == series.id:
            continue
        return None if other.author == series.author or other.id in replaced else other
    return None
