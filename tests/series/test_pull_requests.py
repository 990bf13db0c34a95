"""Pull requests are series of their own kind (issue 14 item 3): a `git request-pull` mail, or QEMU's
`[PULL 0/N]` cover letter with its patches, is filed as one series of kind "pull" whose URL, ref,
tip and base are recorded; re-rolls and `Supersedes:` work as they do for patches."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from gitmail import START
from pullmail import PULL_GIT, pull_mail, qemu_pull, request_pull

from patchbot.config.records import RepositoryConfig
from patchbot.series.intake import take_in
from patchbot.series.pulls import PullRefused, PullRequest, checked_ref, parse_pull_request, pull_source
from patchbot.sources import RawMail


def branch(repo: Path, name: str, files: dict[str, str], start: str = "master") -> str:
    """Commit one change per file on branch `name` (made from `start`); its tip."""
    subprocess.run([*PULL_GIT, "checkout", "-q", "-B", name, start], cwd=repo, check=True)
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
        subprocess.run([*PULL_GIT, "add", path], cwd=repo, check=True)
        subprocess.run([*PULL_GIT, "commit", "-q", "-m", f"Change {path}"], cwd=repo, check=True)
    tip = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "checkout", "-q", "master"], cwd=repo, check=True)
    return tip


def file_in(store, mail: bytes):
    return take_in(store, RawMail(mail, "test"))


def test_a_request_pull_mail_is_a_pull_series_with_its_url_ref_tip_and_base(repo, store):
    tip = branch(repo.path, "rpc-fixes", {"web/rpc.php": "<?php // fixed\n", "aurweb/rpc.py": "# fixed\n"})
    url = f"file://{repo.path}"
    text = request_pull(repo.path, "master", url, "rpc-fixes")
    outcome = file_in(store, pull_mail(text, "[GIT PULL] aurweb: RPC fixes", "pull1@example.org"))

    assert outcome.kind == "pull"
    series = store.series(outcome.series_id)
    assert series.kind == "pull" and series.title == "aurweb: RPC fixes"
    assert series.pull == PullRequest(url=url, ref="rpc-fixes", tip=tip, base=repo.base)
    assert series.complete and series.received == (1,)


def test_a_request_pull_text_after_a_dashes_line_and_wrapped_by_a_mail_client_is_read_whole(repo, store):
    tip = branch(repo.path, "rpc-fixes", {"aurweb/rpc.py": "# fixed\n"})
    url = f"file://{repo.path}"
    text = request_pull(repo.path, "master", url, "rpc-fixes")
    # A greeting and `---` above it (as kernel maintainers write), the commit id and the ref on
    # lines of their own (as a mail client wraps them).
    wrapped = text.replace(f"since commit {repo.base}:", f"since commit\n{repo.base}:").replace(f"{url} rpc-fixes", f"{url}\nrpc-fixes")
    assert wrapped.count("\n") == text.count("\n") + 2
    series = store.series(file_in(store, pull_mail(f"Hi,\n\nplease pull.\n\n---\n\n{wrapped}", "[GIT PULL] RPC", "w@example.org")).series_id)
    assert series.kind == "pull" and series.pull == PullRequest(url, "rpc-fixes", tip, repo.base)


def test_a_pull_naming_no_ref_fetches_the_remote_head(repo, store):
    branch(repo.path, "rpc-fixes", {"aurweb/rpc.py": "# fixed\n"})
    url = f"file://{repo.path}"
    text = request_pull(repo.path, "master", url, "rpc-fixes").replace(f"{url} rpc-fixes", f"{url} ")  # git 2.14.3+: HEAD
    series = store.series(file_in(store, pull_mail(text, "[GIT] Networking", "head@example.org")).series_id)
    assert series.pull.url == url and series.pull.ref is None and checked_ref(series.pull.ref) == "HEAD"


def test_a_tag_is_the_ref_as_request_pull_names_it(repo, store):
    branch(repo.path, "for-aurweb", {"aurweb/a.py": "a = 1\n"})
    subprocess.run([*PULL_GIT, "tag", "-a", "-m", "RPC fixes", "pull-rpc-1", "for-aurweb"], cwd=repo.path, check=True)
    text = request_pull(repo.path, "master", f"file://{repo.path}", "pull-rpc-1")
    series = store.series(file_in(store, pull_mail(text, "[GIT PULL] RPC fixes", "tag@example.org")).series_id)
    assert series.pull.ref == "tags/pull-rpc-1"


def test_a_qemu_pull_cover_holds_its_patches_and_the_pull_is_its_data(repo, store, tmp_path):
    tip = branch(repo.path, "block", {"aurweb/one.py": "one = 1\n", "aurweb/two.py": "two = 2\n"})
    mails = qemu_pull(repo.path, "master", f"file://{repo.path}", "block", "Block layer patches", "q1")
    outcomes = [file_in(store, mail) for mail in mails]

    assert [outcome.kind for outcome in outcomes] == ["pull", "patch", "patch"]
    assert len({outcome.series_id for outcome in outcomes}) == 1
    series = store.series(outcomes[0].series_id)
    assert series.kind == "pull" and series.title == "Block layer patches"
    assert series.cover_message_id == "<cover.q1.git.alice@example.org>"
    assert series.received == (1, 2) and series.total == 2 and series.complete
    assert series.pull == PullRequest(f"file://{repo.path}", "block", tip, repo.base)


def test_patches_arriving_before_their_pull_cover_join_it(repo, store):
    branch(repo.path, "block", {"aurweb/one.py": "one = 1\n", "aurweb/two.py": "two = 2\n"})
    cover, *patches = qemu_pull(repo.path, "master", f"file://{repo.path}", "block", "Block layer patches", "late")
    outcomes = [file_in(store, mail) for mail in (*patches, cover)]
    assert len({outcome.series_id for outcome in outcomes}) == 1
    series = store.series(outcomes[0].series_id)
    assert series.kind == "pull" and series.received == (1, 2) and series.pull.ref == "block"


def test_series_list_and_show_json_give_the_kind_and_the_pull(repo, tmp_path):
    tip = branch(repo.path, "block", {"aurweb/one.py": "one = 1\n", "aurweb/two.py": "two = 2\n"})
    archive = tmp_path / "pull.mbox"
    mails = qemu_pull(repo.path, "master", f"file://{repo.path}", "block", "Block layer patches", "cli")
    archive.write_bytes(b"".join(b"From nobody Mon Sep 17 00:00:00 2001\n" + mail + b"\n" for mail in mails))
    db = tmp_path / "patchbot.db"

    def patchbot(*args: str):
        result = subprocess.run([sys.executable, "-m", "patchbot", "--db", str(db), *args], capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout)

    subprocess.run([sys.executable, "-m", "patchbot", "--db", str(db), "ingest", str(archive)], check=True, capture_output=True)
    [listed] = patchbot("series", "list", "--json")
    assert listed["kind"] == "pull"
    assert listed["pull"] == {"url": f"file://{repo.path}", "ref": "block", "tip": tip, "base": repo.base}
    shown = patchbot("series", "show", str(listed["id"]), "--json")
    assert shown["kind"] == "pull" and shown["pull"]["tip"] == tip and [p["number"] for p in shown["patches"]] == [1, 2]


def test_a_git_pull_v2_supersedes_v1(repo, store):
    url = f"file://{repo.path}"
    branch(repo.path, "rpc-fixes", {"aurweb/rpc.py": "# one\n"})
    v1 = file_in(store, pull_mail(request_pull(repo.path, "master", url, "rpc-fixes"), "[GIT PULL] aurweb: RPC fixes", "v1@example.org"))
    tip = branch(repo.path, "rpc-fixes", {"aurweb/rpc.py": "# one, reworked\n"})
    v2 = file_in(store, pull_mail(request_pull(repo.path, "master", url, "rpc-fixes"), "[GIT PULL v2] aurweb: RPC fixes",
                                  "v2@example.org", date=START + timedelta(days=1)))

    newer, older = store.series(v2.series_id), store.series(v1.series_id)
    assert newer.version == 2 and newer.kind == "pull" and newer.pull.tip == tip
    assert newer.supersedes_id == older.id and older.obsolete and not newer.obsolete


def test_a_qemu_pull_v2_supersedes_v1(repo, store):
    url = f"file://{repo.path}"
    branch(repo.path, "block", {"aurweb/one.py": "one = 1\n", "aurweb/two.py": "two = 2\n"})
    v1 = [file_in(store, mail) for mail in qemu_pull(repo.path, "master", url, "block", "Block layer patches", "b1")]
    branch(repo.path, "block", {"aurweb/one.py": "one = 1\n", "aurweb/two.py": "two = 2.0\n"})
    v2 = [file_in(store, mail) for mail in qemu_pull(repo.path, "master", url, "block", "Block layer patches", "b2",
                                                     version=2, date=START + timedelta(days=1))]
    newer = store.series(v2[0].series_id)
    assert {outcome.series_id for outcome in v2} == {newer.id} and newer.version == 2 and newer.complete
    assert newer.supersedes_id == v1[0].series_id and store.series(v1[0].series_id).obsolete


def test_supersedes_on_a_pull_counts_from_its_author_only(repo, store):
    url = f"file://{repo.path}"
    branch(repo.path, "rpc-fixes", {"aurweb/rpc.py": "# one\n"})
    text = request_pull(repo.path, "master", url, "rpc-fixes")
    alices = file_in(store, pull_mail(text, "[GIT PULL] aurweb: RPC fixes", "alice1@example.org"))

    # A stranger's pull that says it replaces Alice's: a series of its own, Alice's stays current.
    strangers = file_in(store, pull_mail(f"Supersedes: <alice1@example.org>\n\n{text}", "[GIT PULL] aurweb: better fixes",
                                         "mallory1@example.org", sender="Mallory <mallory@evil.example>",
                                         date=START + timedelta(hours=1)))
    assert store.series(strangers.series_id).kind == "pull"
    assert store.series(strangers.series_id).supersedes_id is None and not store.series(alices.series_id).obsolete

    # Alice's own, under another title, is her new version.
    own = file_in(store, pull_mail(f"Supersedes: <alice1@example.org>\n\n{text}", "[GIT PULL] aurweb: RPC fixes, rebased",
                                   "alice2@example.org", date=START + timedelta(hours=2)))
    assert store.series(own.series_id).supersedes_id == alices.series_id and store.series(alices.series_id).obsolete


def test_a_reply_quoting_a_pull_request_is_a_reply(repo, store):
    branch(repo.path, "rpc-fixes", {"aurweb/rpc.py": "# one\n"})
    text = request_pull(repo.path, "master", f"file://{repo.path}", "rpc-fixes")
    pull = file_in(store, pull_mail(text, "[GIT PULL] aurweb: RPC fixes", "p@example.org"))
    quoted = "".join(f"> {line}\n" for line in text.splitlines())
    reply = file_in(store, pull_mail(f"Pulled, thanks.\n\n{quoted}", "Re: [GIT PULL] aurweb: RPC fixes", "r@example.org",
                                     sender="Lukas <lukas@example.org>", in_reply_to="<p@example.org>"))
    assert reply.kind == "reply" and reply.series_id == pull.series_id
    assert len(store.all_series()) == 1


ALLOWED = RepositoryConfig(url="/srv/aurweb.git", pull_hosts=("git.kernel.org", "gitlab.archlinux.org"))


@pytest.mark.parametrize("url, protocol", [
    ("https://gitlab.archlinux.org/archlinux/aurweb.git", "https"),
    ("git://git.kernel.org/pub/scm/git/git.git", "git"),
    ("https://GIT.Kernel.org./pub/scm/git/git.git", "https"),  # host names are not case-sensitive
])
def test_an_allowed_host_is_fetched_over_its_protocol_only(url, protocol):
    assert pull_source(url, ALLOWED).protocol == protocol


@pytest.mark.parametrize("url, why", [
    ("https://evil.example.org/aurweb.git", "pull host evil.example.org is not allowed (operator: [repository] pull_hosts)"),
    ("https://git.kernel.org@evil.example.org/x.git", "pull host evil.example.org is not allowed"),  # user@ is not the host
    ("https://git.kernel.org.evil.example.org/x.git", "pull host git.kernel.org.evil.example.org is not allowed"),
    ("https://git.kernel.org:notaport/x.git", "pull host (none) is not allowed"),
    ("http://git.kernel.org/pub/scm/git/git.git", "over https:// or git:// only, not http"),
    ("ssh://git.kernel.org/pub/scm/git/git.git", "over https:// or git:// only, not ssh"),
    ("git@gitlab.archlinux.org:archlinux/aurweb.git", "over https:// or git:// only, not ssh"),
    ("ext::sh%20-c%20touch%20x", "pull host (none) is not allowed"),
    ("-uhttps://git.kernel.org/x", "not one git may be given"),
    ("file:///srv/aurweb.git", "local paths are not allowed (operator: [repository] pull_local)"),
    ("/srv/aurweb.git", "local paths are not allowed"),
])
def test_any_other_url_is_refused_with_the_reason(url, why):
    with pytest.raises(PullRefused, match=re.escape(why)):
        pull_source(url, ALLOWED)


def test_local_pulls_only_with_pull_local():
    local = RepositoryConfig(url="/srv/aurweb.git", pull_local=True)
    assert pull_source("file:///srv/other.git", local).protocol == "file"
    assert pull_source("/srv/other.git", local).protocol == "file"
    with pytest.raises(PullRefused, match="pull host git.kernel.org is not allowed"):
        pull_source("https://git.kernel.org/x.git", local)


@pytest.mark.parametrize("ref, fetched", [("for-linus", "for-linus"), ("tags/pull-1", "tags/pull-1"), (None, "HEAD")])
def test_a_ref_name_is_fetched_as_it_is(ref, fetched):
    assert checked_ref(ref) == fetched


@pytest.mark.parametrize("ref", ["--upload-pack=touch x", "master:refs/heads/master", "a..b", "a b", "refs/heads/*"])
def test_anything_but_a_ref_name_is_refused(ref):
    with pytest.raises(PullRefused, match="not a ref name"):
        checked_ref(ref)


def test_a_pull_without_tip_or_base_lines_keeps_what_it_says():
    assert parse_pull_request("https://git.kernel.org/x.git for-linus", "Please pull.\n") == PullRequest(
        "https://git.kernel.org/x.git", "for-linus", None, None)
    assert parse_pull_request(None, "The following changes since commit 1234567:\n") is None


def test_apply_of_a_pull_request_is_refused_with_the_git_pull_to_run(repo, store, tmp_path):
    """`patchbot: apply` applies patch mails with git am; a pull request's code is its branch."""
    from patchbot.commands.protocol import CommandContext
    from patchbot.commands.apply import Apply
    from patchbot.config.records import Config

    branch(repo.path, "rpc-fixes", {"aurweb/rpc.py": "# fixed\n"})
    url = f"file://{repo.path}"
    outcome = file_in(store, pull_mail(request_pull(repo.path, "master", url, "rpc-fixes"),
                                       "[GIT PULL] aurweb: RPC fixes", "pull9@example.org"))
    config = Config(repository=RepositoryConfig(url=str(repo.path), push_url=str(tmp_path / "pushed.git")))
    context = CommandContext(store, config, tmp_path, store.mail_by_id(outcome.mail_id), "lukas@example.org")
    result = Apply().run(context, store.series(outcome.series_id), ("master", "v1"))
    assert result.status.value == "refused"
    assert f'merge it with "git pull {url} rpc-fixes"' in result.text
