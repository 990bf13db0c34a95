"""Applying series with real git: mirror, worktree, git am -3, the failing patch named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from patchbot.testing.apply import (
    BaseChoice, GitError, PatchMail, apply_series, clean_leftover_worktrees, ensure_mirror, fetch, remove_worktree,
    resolve,
)


def patch_mails(mails) -> list[PatchMail]:
    numbered = [mail for mail in mails if "0/" not in mail.header("Subject")]
    return [PatchMail(i + 1, len(numbered), mail.header("Subject"), mail.as_bytes()) for i, mail in enumerate(numbered)]


def log_of(worktree: Path, *fmt: str) -> list[str]:
    return subprocess.run(["git", "log", "--format=" + "|".join(fmt)], cwd=worktree, capture_output=True, text=True,
                          check=True).stdout.splitlines()


@pytest.fixture
def mirror(repo, tmp_path):
    return ensure_mirror(str(repo.path), tmp_path / "mirrors")


def master(repo) -> BaseChoice:
    return BaseChoice("master", "default branch master", "master")


def test_a_series_applies_with_authorship_kept(repo, mirror, tmp_path):
    mails = repo.series(["Add a", "Add b"], cover="Two things")
    fetch(mirror)
    applied = apply_series(mirror, master(repo), patch_mails(mails), tmp_path / "worktrees")
    assert applied.ok and applied.failed_patch is None
    assert applied.base_commit == resolve(mirror, "master") and applied.base_behind_tip == 0
    assert log_of(applied.worktree, "%s", "%an <%ae>", "%cn")[:2] == [
        "Add b|Jane Doe <jane@example.org>|patchbot", "Add a|Jane Doe <jane@example.org>|patchbot"]
    assert (applied.worktree / "web/file1_1.php").is_file()
    remove_worktree(mirror, applied.worktree)
    assert not applied.worktree.exists()


def test_crlf_mail_as_smtp_delivers_it_still_applies(repo, mirror, tmp_path):
    mails = repo.series(["Add a"], thread=None)
    patch = patch_mails(mails)[0]
    crlf = PatchMail(1, 1, patch.subject, patch.raw.replace(b"\n", b"\r\n"))
    applied = apply_series(mirror, master(repo), [crlf], tmp_path / "worktrees")
    assert applied.ok, applied.detail


def test_the_second_patch_failing_is_named_with_file_and_line(repo, tmp_path):
    mails = repo.series(["Add a", "Edit README"], files=[("web/a.php", "<?php\n"), ("README", "base\nmore\n")])
    repo.commit_on_master("README", "upstream rewrote it\n", "Rewrite README")
    mirror = ensure_mirror(str(repo.path), tmp_path / "mirrors")
    applied = apply_series(mirror, master(repo), patch_mails(mails), tmp_path / "worktrees")
    assert not applied.ok
    assert (applied.failed_patch, applied.failed_total) == (2, 2)
    assert applied.failed_subject == "[PATCH 2/2] Edit README"
    assert [conflict.path for conflict in applied.conflicts] == ["README"]
    assert applied.conflicts[0].line == 1
    assert applied.worktree is None
    assert list((tmp_path / "worktrees").iterdir()) == []


def test_an_old_base_is_reported_behind_the_branch_tip(repo, tmp_path):
    mails = repo.series(["Add a"], thread=None)
    repo.commit_on_master("web/other.php", "<?php\n", "Other work")
    repo.commit_on_master("web/more.php", "<?php\n", "More work")
    mirror = ensure_mirror(str(repo.path), tmp_path / "mirrors")
    applied = apply_series(mirror, BaseChoice(repo.base, "base-commit", "master"), patch_mails(mails), tmp_path / "wt")
    assert applied.ok and applied.base_behind_tip == 2 and applied.base_commit == repo.base


def test_a_prerequisite_series_is_applied_first(repo, mirror, tmp_path):
    first = repo.series(["Add the helper"], thread=None, files=[("web/helper.php", "<?php\n")])
    second = repo.series(["Use the helper"], thread=None, files=[("web/helper.php", "<?php\n// used\n")],
                         on_top_of=repo.last_branch)
    alone = apply_series(mirror, master(repo), patch_mails(second), tmp_path / "wt")
    assert not alone.ok and alone.conflicts[0].path == "web/helper.php"
    base = BaseChoice("master", "Based-on: the helper series", "master", prerequisites=tuple(patch_mails(first)))
    applied = apply_series(mirror, base, patch_mails(second), tmp_path / "wt")
    assert applied.ok, applied.detail
    assert (applied.worktree / "web/helper.php").read_text() == "<?php\n// used\n"


def test_a_failing_prerequisite_is_told_apart(repo, mirror, tmp_path):
    first = repo.series(["Edit README"], thread=None, files=[("README", "base\nmore\n")])
    second = repo.series(["Add a"], thread=None, on_top_of=repo.last_branch)
    repo.commit_on_master("README", "upstream rewrote it\n", "Rewrite README")
    fetch(mirror)
    base = BaseChoice("master", "Based-on", "master", prerequisites=tuple(patch_mails(first)))
    applied = apply_series(mirror, base, patch_mails(second), tmp_path / "wt")
    assert not applied.ok and applied.prerequisite_failed and applied.conflicts[0].path == "README"


def test_leftover_worktrees_of_a_crash_are_removed(repo, mirror, tmp_path):
    mails = repo.series(["Add a"], thread=None)
    applied = apply_series(mirror, master(repo), patch_mails(mails), tmp_path / "wt")
    assert applied.ok
    # The process died here: nobody removed the worktree.
    assert clean_leftover_worktrees(mirror, tmp_path / "wt") == 1
    assert not applied.worktree.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=mirror, capture_output=True, text=True).stdout
    assert str(applied.worktree) not in listed


def test_ref_locks_left_by_a_git_killed_mid_fetch_do_not_stop_later_fetches(repo, mirror):
    """patchbot serve may be SIGKILLed while git fetches; the next fetch must still work."""
    repo.commit_on_master("NEWS", "new\n", "news")
    stale = [mirror / "refs" / "heads" / "master.lock", mirror / "packed-refs.lock"]
    for lock in stale:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("")
    fetch(mirror)
    assert not any(lock.exists() for lock in stale)
    assert resolve(mirror, "master") == subprocess.run(["git", "rev-parse", "master"], cwd=repo.path, capture_output=True,
                                                       text=True, check=True).stdout.strip()


def test_a_worktree_add_killed_half_way_is_cleaned_up_so_fetches_work_again(repo, mirror, tmp_path):
    """Killed inside `git worktree add`: its entry stays locked, prune skips it, and its HEAD
    names an object the mirror lacks, which fails every fetch until it is removed."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    entry = mirror / "worktrees" / f"run-{dead.pid}-x1y2z3"
    entry.mkdir(parents=True)
    (entry / "locked").write_text("initializing")
    (entry / "HEAD").write_text("1234567890123456789012345678901234567890\n")
    (entry / "gitdir").write_text(str(tmp_path / "wt" / f"run-{dead.pid}-x1y2z3" / ".git") + "\n")
    (entry / "commondir").write_text("../..\n")
    repo.commit_on_master("NEWS", "new\n", "news")
    with pytest.raises(GitError):
        fetch(mirror)
    clean_leftover_worktrees(mirror, tmp_path / "wt")
    fetch(mirror)
    assert not entry.exists()


def test_workers_adding_worktrees_while_another_fetches_do_not_break_the_fetch(repo, mirror, tmp_path):
    """patchbot serve's workers share one mirror: a fetch must never meet a worktree being added."""
    import threading

    repo.commit_on_master("NEWS", "new\n", "news")
    errors = []

    def apply_many() -> None:
        for _ in range(60):
            applied = apply_series(mirror, master(repo), [], tmp_path / "wt")
            remove_worktree(mirror, applied.worktree)

    def fetch_many() -> None:
        try:
            for _ in range(60):
                fetch(mirror)
        except GitError as error:
            errors.append(error)

    workers = [threading.Thread(target=apply_many), threading.Thread(target=apply_many), threading.Thread(target=fetch_many)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
