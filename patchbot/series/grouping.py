"""Group parsed mails into series and versions.

A patch or cover letter joins the series its thread points to (its own Message-ID, then
In-Reply-To, then References, closest first), else an unthreaded series by the same sender,
version and total from the last 20 minutes, else it starts a series. A number already taken
starts a new series. A higher version in the thread of an older one is its re-roll; one sent
in reply to the same-numbered patch of the older version is a partial re-roll and inherits
the patches it does not replace. Versions are also linked by `Supersedes: <msgid>` and by
the same normalised title and sender; older versions become obsolete, also when they are
filed (or dated) after the version that replaces them. A patch threaded under its series'
cover letter belongs to it whatever version its subject says: the cover's version wins, and
the series notes the mismatch. A number beyond the total (`[PATCH 3/2]`) joins its series,
which notes that it has more patches than announced. `Based-on:`, `Depends-on:` and
`Supersedes:` count from the series' own mails, and from replies in its thread by its author
or a maintainer; anyone else's are ignored.

Only the series' own sender (the author the mail parser resolved) may add to a series,
re-roll it or supersede it, and a maintainer whose mail passes the command check (DKIM where
required); anyone else's patch in its thread starts a series of its own, which replies in
the thread with its own result. Anyone on the list can post into a thread: a stranger's
`[PATCH v2 2/2]` in reply to Vera's 2/2 once became Vera's v2, made her v1 obsolete and
got "v2 of this series ... every suite passed" posted in her thread.

A From is a claim anyone can make, so ownership is sticky to a signature: where the operator
relies on DKIM (`[commands] require_dkim`, the default), a series any of whose author's mails
carried a DKIM signature of the author's own domain (covering From, Message-ID, Subject and
the thread headers it has) is only its author's as far as a mail is so signed. An unsigned mail
that forges the author's From starts a series of its own instead of extending, re-rolling,
superseding or rebasing the author's. A series never signed stays open to its From, as before:
patchbot cannot tell that author from a forger (tests/security/README lists it as open).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from datetime import datetime, timedelta, timezone

from patchbot.commands.identity import identify, signed_by_sender
from patchbot.config.records import Config
from patchbot.mail import Kind, ParsedMail
from patchbot.mail.headers import message_ids_in
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord

log = logging.getLogger(__name__)

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


# Whether the mail being filed is signed by its sender's domain (asked only where it matters);
# None where the operator does not rely on DKIM: a From is then taken as it is.
Proof = Callable[[], bool]


def dkim_proof(config: Config | None, raw: bytes) -> Proof | None:
    """The sticky-signing check of one mail (identity.signed_by_sender), made at most once."""
    if config is None or not config.commands.require_dkim:
        return None
    return cache(lambda: signed_by_sender(raw))


@dataclass(frozen=True)
class Filing:
    """Where a mail was filed: its final kind, the series (if any) and the rule that decided."""

    kind: Kind
    series_id: int | None
    rule: str


def file_mail(store: Store, mail_id: int, mail: ParsedMail, received_at: datetime | None = None,
              vouched: Vouch = nobody, proof: Proof | None = None) -> Filing:
    """File a stored, parsed mail into its series (creating or re-rolling one as needed).
    `proof`: whether the mail is signed by its sender's domain (see dkim_proof)."""
    if mail.kind in (Kind.PATCH, Kind.COVER, Kind.PULL):
        answers: dict[int, bool] = {}

        def owns(series: SeriesRecord) -> bool:
            if _as_author(store, series, mail, proof):
                return True
            if series.id not in answers:
                answers[series.id] = vouched(series)
            return answers[series.id]
        filing = _file_series_mail(store, mail_id, mail, mail.date or received_at or datetime.now(timezone.utc), owns)
        if proof is not None and store.series(filing.series_id).author == mail.sender.addr and proof():
            store.mark_series_signed(filing.series_id)
        return filing
    series = store.series_by_thread((mail.message_id, *mail.thread_ids))
    if series is None:
        return Filing(mail.kind, None, "not-in-a-known-thread")
    store.attach_to_series(mail_id, series.id)
    # Replies to this reply belong to the same thread.
    store.remember_thread_ids(series.id, (mail.message_id,))
    rule = _hints_in_reply(store, series, mail_id, mail, vouched, proof)
    return Filing(mail.kind, series.id, rule or "in-series-thread")


def _as_author(store: Store, series: SeriesRecord, mail: ParsedMail, proof: Proof | None) -> bool:
    """The mail is the series' author's, as far as the series' signing lets a From be believed."""
    if series.author != mail.sender.addr:
        return False
    return proof is None or not store.series_signed(series.id) or proof()


def _file_series_mail(store: Store, mail_id: int, mail: ParsedMail, date: datetime,
                      owns: Callable[[SeriesRecord], bool]) -> Filing:
    # A pull request is a cover letter where numbered (QEMU's `[PULL 00/29]`), else patch 1 of 1.
    number = 0 if mail.kind is Kind.COVER else (1 if mail.subject.counter is None else mail.subject.counter)
    total = mail.subject.total if mail.subject.counter is not None else (None if mail.kind is Kind.COVER else 1)
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
    if thread is not None and thread.version != version and _under_its_cover(thread, mail, number, total, mail_id, along):
        series, rule = thread, "thread-cover-version-wins"
        if number == 0:
            store.update_series(series.id, version=version)
    elif thread is not None and thread.version == version:
        if _slot_free(thread, number, mail_id) and _totals_agree(thread.total, total):
            series, rule = thread, "thread"
        else:
            rule = "number-taken-new-series"
    elif thread is not None and version > thread.version:
        series, rule = _reroll(store, thread, mail, number, total, owns)
    else:
        series = _unthreaded_match(store, mail, number, total, version, date, owns)
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
    if mail.kind is Kind.PULL:  # what its test fetches (a pull's own patches are its record)
        store.set_series_pull(series_id, mail.pull)
    _keep_base_hints(store, series_id, mail_id, mail)
    store.claim_own_thread_id(series_id, mail.message_id)
    store.remember_thread_ids(series_id, mail.thread_ids)
    _link_earlier_version(store, store.series(series_id), mail, owns)
    return Filing(mail.kind, series_id, rule)


def _under_its_cover(series: SeriesRecord, mail: ParsedMail, number: int, total, mail_id: int, along) -> bool:
    """A patch threaded under its series' cover letter belongs to it whatever version its subject
    says, and the cover's version wins (Patchwork does the same: a hand-edited cover letter says
    `[PATCH net-next v3 0/4]`, format-patch's patches `[PATCH 1/4]`). A cover letter that arrives
    after its patches (whose References named it) makes the series its version when it is the
    higher one; a lower one is an older version that those patches were sent in reply to."""
    if not (_slot_free(series, number, mail_id) and _totals_agree(series.total, total)):
        return False
    if number == 0:
        return along[0][0] == mail.message_id and along[0][1].id == series.id and mail.subject.version > series.version
    return series.cover_message_id is not None and series.cover_message_id in mail.thread_ids


def _slot_free(series: SeriesRecord, number: int, mail_id: int) -> bool:
    if number == 0:
        return series.cover_mail_id in (None, mail_id)
    slot = series.slot(number)
    return slot is None or slot.inherited or slot.mail_id == mail_id


def _totals_agree(known: int | None, total: int | None) -> bool:
    return known is None or total is None or known == total


def _reroll(store, older: SeriesRecord, mail: ParsedMail, number: int, total, owns: Callable[[SeriesRecord], bool]):
    """A higher version sent into an older version's thread: join its re-roll or start one."""
    for candidate in store.rerolls_of(older.id, mail.subject.version, mail.sender.addr):
        if _slot_free(candidate, number, -1) and _totals_agree(candidate.total, total) and owns(candidate):
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


def _unthreaded_match(store, mail: ParsedMail, number: int, total, version: int, date: datetime,
                      owns: Callable[[SeriesRecord], bool]):
    """git send-email without threading: same sender, version and total, close in time."""
    if total is None or total == 1:
        return None
    for candidate in store.recent_series_of(
        mail.sender.addr, version, total, date - UNTHREADED_WINDOW, date + UNTHREADED_WINDOW
    ):
        if _slot_free(candidate, number, -1) and owns(candidate):
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
    # An earlier version filed after its re-roll (a late delivery, an archive read out of order,
    # a Date set later) is what the re-roll replaces: it never becomes the current version.
    later = store.later_unlinked_versions(series.author, series.normalised_title, series.version, series.id)
    # ...unless that later version's From was never signed and this one's was: a forger's.
    if later and (store.series_signed(later[0].id) or not store.series_signed(series.id)):
        store.link_versions(later[0].id, series.id)
    if series.supersedes_id is not None:
        return
    if _obey_supersedes(store, series, mail, owns):
        return
    if series.version > 1:
        earlier = store.earlier_versions(series.author, series.normalised_title, series.version, series.id)
        if earlier and owns(earlier[0]):
            store.link_versions(series.id, earlier[0].id)


def _obey_supersedes(store: Store, series: SeriesRecord, mail: ParsedMail,
                     owns: Callable[[SeriesRecord], bool]) -> bool:
    """Link `series` to the older one a `Supersedes: <msgid>` of `mail` names, if `owns` allows it."""
    for value in mail.trailer_values("Supersedes"):
        for message_id in message_ids_in(value) or (f"<{value.strip('<> ')}>",):
            older = store.series_of_mail(message_id)
            if older is not None and older.id != series.id and older.supersedes_id != series.id and owns(older):
                store.link_versions(series.id, older.id)
                return True
    return False


BASE_HINTS = ("Based-on", "Depends-on")


def _keep_base_hints(store: Store, series_id: int, mail_id: int, mail: ParsedMail) -> None:
    for name in BASE_HINTS:
        for value in mail.trailer_values(name):
            store.add_series_hint(series_id, mail_id, name, value)


def _hints_in_reply(store: Store, series: SeriesRecord, mail_id: int, mail: ParsedMail, vouched: Vouch,
                    proof: Proof | None) -> str | None:
    """`Based-on:`, `Depends-on:` and `Supersedes:` in a reply count when the series' author or a
    maintainer (as the command check believes them) wrote it; anyone else's would let a stranger
    pick the code a series is tested on, or make the author's series obsolete. Returns the rule."""
    if not any(mail.trailer_values(name) for name in (*BASE_HINTS, "Supersedes")):
        return None
    if _as_author(store, series, mail, proof):
        who = "author"
    elif vouched(series):
        who = "maintainer"
    else:
        log.info("%s: Based-on:/Depends-on:/Supersedes: ignored: %s is neither the author of series %d nor a maintainer",
                 mail.message_id, mail.sender.addr, series.id)
        return "series-hints-ignored-not-author-or-maintainer"
    _keep_base_hints(store, series.id, mail_id, mail)
    # The author may say their series replaces an older one of their own; a maintainer any.
    _obey_supersedes(store, series, mail, lambda older: who == "maintainer" or older.author == series.author)
    return f"series-hints-from-{who}"


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
