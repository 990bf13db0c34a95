"""An edit to an empty file (`@@ -0,0 +1 @@`, no `new file mode`) is an edit, not a new file
(issue 14: unidiff's is_added_file says "added" of any diff that starts at -0,0); emptying a
file is not deleting it."""

from __future__ import annotations

from gitmail import GIT_ENV, PatchRepo

from patchbot.mail import parse_mail


def commit_and_format(repo: PatchRepo, name: str, text: str, message: str) -> bytes:
    repo.commit_on_master(name, text, message)
    return repo._git("format-patch", "--stdout", "-1", "HEAD").encode()


def files_of(mail: bytes):
    return {change.path: change for change in parse_mail(mail.split(b"\n", 1)[1]).files}


def test_an_edit_to_an_empty_file_is_not_a_new_file(repo):
    created = commit_and_format(repo, "web/empty.php", "", "Add an empty file")
    edited = commit_and_format(repo, "web/empty.php", "<?php\n", "Fill the empty file")
    emptied = commit_and_format(repo, "web/empty.php", "", "Empty it again")
    assert b"@@ -0,0 +1 @@" in edited and b"new file mode" not in edited
    assert files_of(created)["web/empty.php"].added
    assert not files_of(edited)["web/empty.php"].added
    assert files_of(edited)["web/empty.php"].lines_added == 1
    assert b"@@ -1 +0,0 @@" in emptied and b"deleted file mode" not in emptied
    assert not files_of(emptied)["web/empty.php"].deleted


def test_a_new_file_with_content_and_a_deleted_file_still_say_so(repo):
    added = commit_and_format(repo, "web/new.php", "<?php\n", "Add a file")
    assert files_of(added)["web/new.php"].added
    repo._git("rm", "-q", "web/new.php")
    repo._git("commit", "-q", "-m", "Remove it", env=GIT_ENV)
    removed = repo._git("format-patch", "--stdout", "-1", "HEAD").encode()
    assert files_of(removed)["web/new.php"].deleted
