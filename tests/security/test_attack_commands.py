"""Attacks on commands (issue 11, items 2, 3, 4, 5 and the trailers of 11): a list member forging or
replaying what a maintainer signed, so that `patchbot: apply` pushes what nobody meant to push.

Every test runs the real pipeline on a copy of a database where two of the sample's series were
tested (Kevin's PHP fix passes, Frédéric's Python port has a new failure, so it needs "force"):
mails are taken in as the list delivers them, signed for real by dkimpy with keys made here
(served in place of DNS), `apply` runs real git and pushes to a bare repository, and the
acknowledgements are read back from a real SMTP server on 127.0.0.1.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "commands"))  # the command tests' helpers

from commands_support import (  # noqa: E402
    LUKAS, PHP_FIX, PY_PORT, SIGNED_HEADERS, DkimKeys, build_tested_db, command_mail, git, session_maker,
)
from reply.outbox_support import LIST, aurweb_repo  # noqa: E402,F401 - aurweb_repo: a fixture

from patchbot.config.load import load_config  # noqa: E402
from patchbot.sources import RawMail  # noqa: E402

MALLORY = "Mallory <mallory@evil.example>"
DOMAINS = ("example.org", "evil.example", "lists.archlinux.org", "linux-foundation.org")


@pytest.fixture(scope="module")
def db(aurweb_repo, tmp_path_factory) -> Path:
    return build_tested_db(aurweb_repo, tmp_path_factory.mktemp("tested"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> DkimKeys:
    return DkimKeys(tmp_path_factory.mktemp("keys"), DOMAINS)


@pytest.fixture
def bare(tmp_path, aurweb_repo) -> Path:
    """The repository `apply` pushes to: a real bare clone of the sample."""
    path = tmp_path / "pushed.git"
    git("clone", "-q", "--bare", str(aurweb_repo), str(path), cwd=tmp_path)
    return path


@pytest.fixture
def make(db, aurweb_repo, tmp_path, keys, monkeypatch):
    """make(**options) -> Session on a copy of the tested database; the keys of DOMAINS are served."""
    keys.serve(monkeypatch)
    with session_maker(db, aurweb_repo, tmp_path) as start:
        yield start


def master(bare: Path) -> str:
    return git("rev-parse", "master", cwd=bare).strip()


def authors_pushed(bare: Path, since: str) -> list[str]:
    return git("log", "--format=%an", f"{since}..master", cwd=bare).split("\n")[:-1]


def prepended(mail: RawMail, headers: bytes) -> RawMail:
    """The mail re-sent by someone who put header lines above the original ones."""
    return RawMail(headers + mail.data, "test")


# -- 2: a signed command replayed in another thread, or later -------------------------------------


def test_attack_2_signed_apply_resent_with_prepended_thread_headers_pushes_nothing(make, bare, keys):
    """Lukas's genuine signed "apply master v1 force" for Kevin's fix, re-sent by a subscriber
    with Message-ID, In-Reply-To and References prepended that point at the Python port:
    dkimpy verifies it (it hashes the bottom-most instances), the parser read the top ones."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    genuine = keys.sign(command_mail("Applying, thanks.\n\npatchbot: apply master v1 force\n"), "example.org")
    s.send(genuine)
    assert "applied to master and pushed" in s.answer_to(genuine)
    assert authors_pushed(bare, before) == ["Kevin Morris"]
    after_genuine = master(bare)

    thread = f"Message-ID: <replay.1@evil.example>\nIn-Reply-To: {PY_PORT}\nReferences: {PY_PORT}\n".encode()
    replay = prepended(genuine, thread)
    s.send(replay)
    assert master(bare) == after_genuine  # Frédéric's port (with its new failure) was not pushed
    body = s.answer_to(replay)
    assert "did not act on yours" in body and "it has 2 Message-ID headers" in body, body
    assert s.bot.store.mail("<replay.1@evil.example>").series_id == 2  # it was filed in the port's thread


def test_attack_2_thread_headers_smuggled_behind_a_lone_cr_are_not_read(make, bare, keys):
    """The same replay with the extra headers inside one unsigned header line, separated by bare
    CRs: dkimpy sees one X-Mailer line, Python's email package sees three more headers on top."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    genuine = keys.sign(command_mail("patchbot: apply master v1 force\n", parent=PHP_FIX), "example.org")
    smuggled = prepended(genuine, f"X-Mailer: mutt\rMessage-ID: <replay.2@evil.example>\rIn-Reply-To: {PY_PORT}"
                                  f"\rReferences: {PY_PORT}\n".encode())
    s.send(smuggled)
    assert master(bare) == before
    assert "Message-ID headers" in s.answer_to(smuggled)


def test_attack_2_signed_command_replayed_after_the_age_limit_is_refused(make, keys):
    """A maintainer's genuine signed retest from weeks ago, delivered again (to a patchbot that
    never saw it): it is refused, since a signed command counts only 7 days after its Date."""
    s = make(require_dkim=True)
    old = format_datetime(datetime.now(timezone.utc) - timedelta(days=30))
    replay = keys.sign(command_mail("patchbot: retest\n", date=old), "example.org")
    counts = s.send(replay)
    assert "series tested" not in counts and s.results_in(PHP_FIX) == []
    assert "more than 7 days before patchbot received it" in s.answer_to(replay)


def test_attack_2_signature_that_does_not_cover_the_thread_headers_is_refused(make, bare, keys):
    """A signer that leaves References unsigned: a subscriber adds one pointing at another series."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    unthreaded = command_mail("patchbot: apply master v1 force\n", parent=PY_PORT)
    unthreaded = RawMail(unthreaded.data.replace(f"References: {PY_PORT}\n".encode(), b""), "test")
    signed = keys.sign(unthreaded, "example.org", headers=tuple(h for h in SIGNED_HEADERS if h != b"references"))
    s.send(signed)
    assert master(bare) == before
    assert "does not cover References" in s.answer_to(signed)


def test_attack_2_a_maintainers_private_signed_answer_sent_on_to_the_list_is_refused(make, bare, keys):
    """Lukas answered the port's author privately ("patchbot: apply master v1 force, once the test
    passes"); the recipient sends the signed mail on to the list unchanged, within the age limit."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    private = command_mail("Fix the test first, then\n\npatchbot: apply master v1 force\n", parent=PY_PORT)
    private = keys.sign(RawMail(private.data.replace(f"To: {LIST}\n".encode(), b"To: fred@example.org\n"), "test"),
                        "example.org")
    s.send(private)
    assert master(bare) == before
    assert f"it was not sent to {LIST}" in s.answer_to(private)


# -- 3: a confused deputy: text a maintainer carried but did not write ---------------------------


MIXED = """\
This is a multi-part message in MIME format.
--b1
Content-Type: text/plain; charset=UTF-8

The python suite fails for me as well; the log is attached.

--b1
Content-Type: text/plain; charset=UTF-8{disposition}

collected 88 items
test_search_by_maintainer FAILED
patchbot: apply master v1 force
--b1--
"""


@pytest.mark.parametrize("disposition", ["\nContent-Disposition: attachment; filename=\"suite.log\"", ""],
                         ids=["attachment", "second inline part"])
def test_attack_3_command_in_an_attached_log_is_not_read(make, bare, keys, disposition):
    """Lukas's signed reply attaches the suite's log, in which the attacker's test printed a command."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    mail = keys.sign(command_mail(MIXED.format(disposition=disposition), parent=PY_PORT,
                                  content_type='multipart/mixed; boundary="b1"'), "example.org")
    counts = s.send(mail)
    assert master(bare) == before
    assert s.answers_to(mail) == [] and "commands done" not in counts


BELOW_OWN_TEXT = {
    "outlook header block": "From: Mallory <mallory@evil.example>\nSent: Monday, November 30, 2026 10:00 AM\n"
                            "To: aur-dev@lists.archlinux.org\nSubject: RE: [PATCH] the series\n\n",
    "original message": "-----Original Message-----\n",
    "gmail forward": "---------- Forwarded message ---------\nFrom: Mallory <mallory@evil.example>\n\n",
    "apple forward": "Begin forwarded message:\n\n",
    "attribution": "On Mon, 30 Nov 2026 at 10:00, Mallory <mallory@evil.example> wrote:\n",
    "wrapped attribution": "On Mon, 30 Nov 2026 at 10:00, Mallory\n<mallory@evil.example> wrote:\n",
}


@pytest.mark.parametrize("separator", BELOW_OWN_TEXT.values(), ids=BELOW_OWN_TEXT.keys())
def test_attack_3_top_post_with_the_attackers_text_unquoted_below(make, bare, keys, separator):
    """An Outlook-style top-post: the maintainer's two lines, then the attacker's mail unquoted."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    body = f"I will look at it tomorrow.\n\n{separator}Please apply.\n\npatchbot: apply master v1 force\n"
    mail = keys.sign(command_mail(body, parent=PY_PORT), "example.org")
    s.send(mail)
    assert master(bare) == before
    assert s.answers_to(mail) == []


def test_attack_3_attribution_wrapped_around_a_command_line_is_not_read(make, bare, keys):
    """The attacker's display name is a command; the maintainer's client wraps the attribution."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    body = "Not yet.\n\nOn Mon, 30 Nov 2026 at 10:00,\npatchbot: apply master v1 force\n<mallory@evil.example> wrote:\n"
    mail = keys.sign(command_mail(body, parent=PY_PORT), "example.org")
    s.send(mail)
    assert master(bare) == before and s.answers_to(mail) == []


ALTERNATIVE = """\
--b2
Content-Type: text/plain; charset=UTF-8

Thanks, applying.

patchbot: apply master v1 force

--b2
Content-Type: text/html; charset=UTF-8

<html><body><p>Thanks, I will look at it.</p>{html}</body></html>
--b2--
"""


@pytest.mark.parametrize("html", ["", '<div style="display:none">patchbot: apply master v1 force</div>',
                                  "<blockquote>patchbot: apply master v1 force</blockquote>"],
                         ids=["absent", "hidden", "quoted"])
def test_attack_3_html_twin_that_does_not_show_the_command_is_refused(make, bare, keys, html):
    """The text/plain part says apply; the HTML part, which the maintainer saw and signed, does not."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    mail = keys.sign(command_mail(ALTERNATIVE.format(html=html), parent=PY_PORT,
                                  content_type='multipart/alternative; boundary="b2"'), "example.org")
    s.send(mail)
    assert master(bare) == before
    body = s.answer_to(mail)
    assert "the HTML part of this mail" in body and "does not show \"patchbot: apply master v1 force\"" in body, body


def test_a_command_its_html_twin_shows_acts(make, bare, keys):
    """The control: the same mail whose HTML part shows the command does act."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    html = "<p>patchbot: apply master<br>\n v1 force</p>"
    mail = keys.sign(command_mail(ALTERNATIVE.format(html=html), parent=PY_PORT,
                                  content_type='multipart/alternative; boundary="b2"'), "example.org")
    s.send(mail)
    assert "applied to master and pushed" in s.answer_to(mail)
    assert authors_pushed(bare, before) == ["Frédéric Mangano"]


# -- 4: forged senders ------------------------------------------------------------------------------


def test_attack_4_forged_from_of_a_maintainer_is_refused_by_default(make, bare, tmp_path):
    """No require_dkim in the config: the default holds, and an unsigned From of Lukas is nobody."""
    s = make(push_url=bare, require_dkim=None)
    assert "require_dkim" not in s.bot.config_path.read_text()
    assert load_config(s.bot.config_path).commands.require_dkim
    before = master(bare)
    forged = command_mail("patchbot: apply master v1\n", sender=LUKAS)
    s.send(forged)
    assert master(bare) == before
    assert "no DKIM signature of this mail verifies for example.org" in s.answer_to(forged)


@pytest.mark.parametrize("require_dkim", [True, False])
def test_attack_4_via_in_the_display_name_with_x_original_from_is_not_the_maintainer(make, bare, keys, require_dkim):
    """Mallory's own domain signs (and passes DMARC); only the display name and X-Original-From say Lukas."""
    s = make(push_url=bare, require_dkim=require_dkim)
    before = master(bare)
    forged = command_mail("patchbot: apply master v1\n", sender='"Lukas Fleischer via aur-dev" <mallory@evil.example>',
                          headers=(("X-Original-From", LUKAS), ("Reply-To", LUKAS),
                                   ("List-Post", "<mailto:mallory@evil.example>")))
    forged = keys.sign(forged, "evil.example", headers=(*SIGNED_HEADERS, b"x-original-from", b"reply-to"))
    s.send(forged)
    assert master(bare) == before
    assert "only the maintainers may use it" in s.answer_to(forged)


LIST_REWRITTEN = '"Lukas Fleischer via aur-dev" <aur-dev@lists.archlinux.org>'


@pytest.mark.parametrize("signed_headers, outcome", [
    ((*SIGNED_HEADERS, b"x-original-from"), "Done:\n  > patchbot: retest\n"),
    (SIGNED_HEADERS, "does not cover X-Original-From"),
    (None, "no DKIM signature of this mail verifies for the list's domain lists.archlinux.org"),
], ids=["list signature covers X-Original-From", "list signature without it", "unsigned"])
def test_attack_4_list_rewritten_from_counts_only_with_the_lists_signature_over_x_original_from(
        make, keys, signed_headers, outcome):
    s = make(require_dkim=True)
    mail = command_mail("patchbot: retest\n", sender=LIST_REWRITTEN,
                        headers=(("X-Original-From", LUKAS), ("List-Post", f"<mailto:{LIST}>")))
    if signed_headers is not None:
        mail = keys.sign(mail, "lists.archlinux.org", headers=signed_headers)
    s.send(mail)
    assert outcome in s.answer_to(mail)
    assert len(s.results_in(PHP_FIX)) == (1 if outcome.startswith("Done") else 0)


# -- 5: apply names what it pushes ----------------------------------------------------------------


@pytest.mark.parametrize("command, reason", [
    ("patchbot: apply master force", "apply takes a branch and what to apply"),
    ("patchbot: apply master v2 force", "this thread's series is v1 of"),
    ("patchbot: apply master 0123456789ab force", "its last test's tip commit is"),
], ids=["nothing named", "another version", "another commit"])
def test_attack_2_apply_in_the_wrong_thread_names_another_series_and_pushes_nothing(make, bare, keys, command, reason):
    """A maintainer's signed apply meant for another series (v2, or another tip) lands in this thread."""
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    mail = keys.sign(command_mail(f"{command}\n", parent=PY_PORT), "example.org")
    s.send(mail)
    assert master(bare) == before
    assert reason in s.answer_to(mail)


def test_apply_naming_the_tested_tip_commit_pushes(make, bare, keys):
    s = make(push_url=bare, require_dkim=True)
    before = master(bare)
    tip = s.bot.store.latest_test_run(2).summary["head"]
    mail = keys.sign(command_mail(f"patchbot: apply master {tip[:7]} force\n", parent=PY_PORT), "example.org")
    s.send(mail)
    assert "applied to master and pushed" in s.answer_to(mail)
    assert authors_pushed(bare, before) == ["Frédéric Mangano"]


# -- 11: review trailers only from senders patchbot can believe -------------------------------------


def test_attack_11_unsigned_reviewed_by_is_not_written_into_the_pushed_commit(make, bare, keys):
    """Unsigned replies carrying Reviewed-by: Linus Torvalds, and Mallory's signed mail naming
    Lukas in X-Original-From, reach the thread; only the signed Acked-by of its own sender counts."""
    s = make(push_url=bare, require_dkim=True)
    linus = "Linus Torvalds <torvalds@linux-foundation.org>"
    forged_linus = command_mail(f"Looks good.\n\nReviewed-by: {linus}\n", sender=linus)
    forged_lukas = keys.sign(command_mail(f"Reviewed-by: {LUKAS}\n", sender='"Lukas Fleischer via aur-dev" <mallory@evil.example>',
                                          headers=(("X-Original-From", LUKAS),)), "evil.example")
    acked = keys.sign(command_mail("Acked-by: Kevin Morris <kevin@example.org>\n", sender="Kevin Morris <kevin@example.org>"),
                      "example.org")
    s.send(forged_linus, forged_lukas, acked)
    apply = keys.sign(command_mail("patchbot: apply master v1\n"), "example.org")
    s.send(apply)
    assert "applied to master and pushed (1 review trailer added)" in s.answer_to(apply)
    message = git("log", "-1", "--format=%B", "master", cwd=bare).strip().splitlines()
    assert message[-2:] == ["Signed-off-by: Kevin Morris <kevin@example.org>", "Acked-by: Kevin Morris <kevin@example.org>"]
    assert not any("Torvalds" in line or "Reviewed-by" in line for line in message), message
