"""A forged From of a series' own author: sticky signing (series.py).

Where the operator relies on DKIM (`[commands] require_dkim`, the default), a series whose
author's mails were signed by the author's domain is the author's only as far as a mail is
so signed. The forger here is on the list and sends unsigned mail with `From: Vera`; Vera's
provider signs every mail she sends (keys made with openssl, served as DNS would serve them:
commands_support.DkimKeys). Mails are made by git format-patch (gitmail.PatchRepo) and filed
by the intake stage, with the config, into a real SQLite store.
"""

from __future__ import annotations

import pytest
from gitmail import Mail, PatchRepo

from commands.commands_support import DkimKeys
from patchbot.config.records import CommandsConfig, Config, MailConfig
from patchbot.series.intake import take_in
from patchbot.sources import RawMail
from patchbot.store.database import Store

VERA = "Vera Example <vera@example.org>"
LIST = "aur-dev@lists.archlinux.org"
CONFIG = Config(mail=MailConfig(list_address=LIST), commands=CommandsConfig(require_dkim=True))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> DkimKeys:
    return DkimKeys(tmp_path_factory.mktemp("keys"), ("example.org",))


@pytest.fixture
def store(tmp_path, keys, monkeypatch) -> Store:
    keys.serve(monkeypatch)
    store = Store(tmp_path / "patchbot.db")
    yield store
    store.close()


@pytest.fixture
def repo(tmp_path) -> PatchRepo:
    (tmp_path / "repo").mkdir()
    return PatchRepo(tmp_path / "repo")


def signed(keys: DkimKeys, mail: Mail) -> RawMail:
    """As Vera's provider sends her mail: signed by example.org."""
    return keys.sign(RawMail(mail.as_bytes(), "lmtp"), "example.org")


def forged(mail: Mail) -> RawMail:
    """The same From, sent by someone else: no signature of example.org."""
    return RawMail(mail.as_bytes(), "lmtp")


def file(store: Store, *raws: RawMail) -> list:
    return [take_in(store, raw, CONFIG) for raw in raws]


def series_of(store: Store, mail: Mail):
    return store.series(store.mail(mail.message_id).series_id)


def vera(mails: list[Mail]) -> list[Mail]:
    for mail in mails:
        mail.set("From", VERA)
    return mails


def test_attack_11_forged_from_of_the_author_does_not_reroll_a_signed_series(store, repo, keys):
    v1 = vera(repo.series(["Fix the login form", "Test the login form"], cover="login fixes"))
    file(store, *(signed(keys, mail) for mail in v1))
    original = series_of(store, v1[0])
    assert store.series_signed(original.id)

    v2 = vera(repo.series(["Fix the login form", "Test the login form"], cover="login fixes", version=2,
                          in_reply_to=v1[0].message_id))
    file(store, *(forged(mail) for mail in v2))

    assert not store.series(original.id).obsolete  # Vera's v1 is still current
    other = series_of(store, v2[0])
    assert other.id != original.id and other.supersedes_id is None
    assert not store.series_signed(other.id)


def test_attack_11_forged_extra_patch_of_the_author_does_not_join_a_signed_series(store, repo, keys):
    v1 = vera(repo.series(["Fix the login form", "Test the login form"], cover="login fixes"))
    file(store, *(signed(keys, mail) for mail in v1))
    original = series_of(store, v1[0])

    extra = vera(repo.series(["Also drop the admin check"], in_reply_to=v1[0].message_id))[0]
    extra.set("Subject", "[PATCH 3/2] Also drop the admin check")
    file(store, forged(extra))

    assert store.series(original.id).received == (1, 2)
    assert series_of(store, extra).id != original.id


def test_attack_11_forged_based_on_reply_of_the_author_is_ignored_for_a_signed_series(store, repo, keys):
    v1 = vera(repo.series(["Fix the login form"]))
    file(store, signed(keys, v1[0]))
    reply = Mail([("From", VERA), ("To", LIST), ("Subject", "Re: [PATCH] Fix the login form"),
                  ("Date", "Mon, 01 Mar 2021 13:00:00 +0000"), ("Message-Id", "<based-on.1@example.org>"),
                  ("In-Reply-To", v1[0].message_id), ("References", v1[0].message_id)],
                 "This goes on top of my other series.\n\nBased-on: <evil.base@example.org>\n")
    file(store, forged(reply))
    assert store.series(series_of(store, v1[0]).id).based_on == ()

    genuine = reply.set("Message-Id", "<based-on.2@example.org>")
    file(store, signed(keys, genuine))
    assert store.series(series_of(store, v1[0]).id).based_on == ("<evil.base@example.org>",)


def test_attack_11_forged_unthreaded_version_of_the_author_does_not_obsolete_a_signed_series(store, repo, keys):
    v1 = vera(repo.series(["Fix the login form"]))
    file(store, signed(keys, v1[0]))
    v2 = vera(repo.series(["Fix the login form"], version=2, thread=None))
    file(store, forged(v2[0]))

    assert not series_of(store, v1[0]).obsolete
    assert series_of(store, v2[0]).supersedes_id is None


def test_signed_reroll_of_the_author_still_supersedes_a_signed_series(store, repo, keys):
    """The check must not stop the author: her own signed v2 re-rolls as before."""
    v1 = vera(repo.series(["Fix the login form", "Test the login form"], cover="login fixes"))
    file(store, *(signed(keys, mail) for mail in v1))
    v2 = vera(repo.series(["Fix the login form", "Test the login form"], cover="login fixes", version=2,
                          in_reply_to=v1[0].message_id))
    file(store, *(signed(keys, mail) for mail in v2))

    assert series_of(store, v1[0]).obsolete
    assert series_of(store, v2[0]).supersedes_id == series_of(store, v1[0]).id
    assert series_of(store, v2[0]).received == (1, 2)


def test_a_series_never_signed_stays_open_to_its_from(store, repo):
    """Without any signature patchbot cannot tell the author from a forger: the From decides,
    as it did before (tests/security/README says so)."""
    v1 = vera(repo.series(["Fix the login form"]))
    file(store, forged(v1[0]))
    v2 = vera(repo.series(["Fix the login form"], version=2, in_reply_to=v1[0].message_id))
    file(store, forged(v2[0]))
    assert series_of(store, v1[0]).obsolete


def test_a_signature_that_leaves_the_subject_unsigned_does_not_make_the_mail_the_authors(store, repo, keys):
    """A signature must cover what files the mail (the subject holds its version and number)."""
    v1 = vera(repo.series(["Fix the login form"]))
    file(store, signed(keys, v1[0]))
    v2 = vera(repo.series(["Fix the login form"], version=2, in_reply_to=v1[0].message_id))
    partial = keys.sign(RawMail(v2[0].as_bytes(), "lmtp"), "example.org",
                        headers=(b"from", b"to", b"date", b"message-id", b"in-reply-to", b"references"))
    file(store, partial)
    assert not series_of(store, v1[0]).obsolete
