"""Apply a series to a fresh worktree of a repository mirror, one patch at a time.

One bare mirror per repository, fetched when a needed ref is missing or stale; one
`git worktree add --detach` per run at the chosen base; `git am -3` for each patch so that
authorship is kept and the patch that fails is known. Worktrees are removed when the run
is over, and leftovers of a crash when the next run starts.
"""

from __future__ import annotations

from patchbot import PatchbotError
from patchbot.testing.plan import is_glob, literal_folder, matches

import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Commits made by `git am` carry the author of the mail; the committer is patchbot.
GIT_IDENTITY = ("-c", "user.name=patchbot", "-c", "user.email=patchbot@localhost")
# On the command line, so that no configuration file (not even a repository's) can bring back
# a hook or an fsmonitor command, which git would run as the bot's user outside any sandbox.
GIT_HARDENING = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
GIT_TIMEOUT_S = 600
# The whole configuration git reads besides the repository's own (GIT_CONFIG_GLOBAL). No
# core.hooksPath here: git would pass this file on to the receiving side of a push to a local
# repository, whose hooks are its owner's (GIT_HARDENING's -c stays on our side).
GIT_CONFIG = """\
# Written by patchbot: its git reads this file and no user's or system's configuration.
[core]
\tfsmonitor = false
[protocol "ext"]
\tallow = never
"""
# How git reaches a remote (ssh, a proxy, a CA) is the operator's to say, in the service's environment.
GIT_PASSED_THROUGH = ("GIT_SSH_COMMAND", "GIT_SSH", "SSH_AUTH_SOCK", "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR",
                      "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")

_git_home: Path | None = None


class GitError(PatchbotError):
    """A git command that must work (clone, fetch, worktree) did not: an infrastructure failure."""


@dataclass(frozen=True)
class PatchMail:
    """One patch of a series, as git am will read it."""

    number: int
    total: int
    subject: str
    raw: bytes


@dataclass(frozen=True)
class BaseChoice:
    """Where a series is applied, and why there (the reply says which rule chose it)."""

    ref: str  # a branch name or a commit id
    reason: str  # e.g. "base-commit: 1a2b3c4 from the series", "default branch master"
    branch: str  # the branch the base is compared with (is it behind its tip?)
    prerequisites: tuple[PatchMail, ...] = ()  # another series applied first (Based-on:)


@dataclass(frozen=True)
class Conflict:
    path: str
    line: int | None  # where the hunk that failed starts in the base file, when git says


@dataclass(frozen=True)
class Applied:
    """The result of applying a series: a worktree at the series' head, or where it failed."""

    ok: bool
    base: BaseChoice
    base_commit: str
    worktree: Path | None  # present while the run uses it; None when applying failed
    head: str | None
    failed_patch: int | None = None  # 1-based number of the patch that did not apply
    failed_total: int | None = None
    failed_subject: str | None = None
    conflicts: tuple[Conflict, ...] = ()
    base_behind_tip: int = 0  # commits on the branch since the base (0: the base is its tip)
    prerequisite_failed: bool = False
    detail: str = ""  # what git said, trimmed


def use_git_home(work: Path) -> Path:
    """Make `work`/git-home (mode 0700, ours) the HOME of every git patchbot runs from now on.

    git used to run with HOME set to the temporary folder: a `.gitconfig` anyone planted there
    (core.hooksPath) ran a hook as the bot's user (issue 11 item 11)."""
    global _git_home
    home = work / "git-home"
    _make_private(home)
    _git_home = home
    return home


def _make_private(home: Path) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(home)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise GitError(f"{home} is not a folder of patchbot's own")
    if info.st_mode & 0o077:
        os.chmod(home, 0o700)
    config = home / "gitconfig"
    if not config.is_file() or config.read_text() != GIT_CONFIG:
        partial = home / "gitconfig.partial"
        partial.write_text(GIT_CONFIG)
        partial.replace(config)


def git_environment() -> dict[str, str]:
    """The environment of every git patchbot runs: a HOME and a configuration of its own."""
    global _git_home
    if _git_home is None or not (_git_home / "gitconfig").is_file():
        # Before any work folder is known (a test calling resolve() directly): a fresh private
        # folder, whose random name nobody can have planted anything in.
        home = Path(tempfile.mkdtemp(prefix="patchbot-git-home-"))
        _make_private(home)
        _git_home = home
    home = _git_home
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / "gitconfig"), "GIT_ATTR_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    env.update({name: os.environ[name] for name in GIT_PASSED_THROUGH if name in os.environ})
    return env


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None, check: bool = True,
        extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run git, as every git of patchbot runs: its own HOME and configuration, no hooks.
    `extra_env` adds to that environment (a push's credentials), never replaces it."""
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *GIT_HARDENING, *args], cwd=cwd, input=stdin, capture_output=True,
        timeout=GIT_TIMEOUT_S, env={**git_environment(), **(extra_env or {})},
    )
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result


def mirror_path(mirrors_dir: Path, url: str) -> Path:
    """Where the mirror of a repository lives: a readable name plus a hash of the URL."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    return mirrors_dir / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:10]}.git"


@contextmanager
def mirror_lock(mirror: Path) -> Iterator[None]:
    """Hold the mirror's lock: no two fetches, clones or worktree changes at once, from two
    processes (cron overlapping a run) or two workers of one (each opens the file anew, and
    flock excludes between open files)."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_mirror(url: str, mirrors_dir: Path) -> Path:
    """A bare mirror of `url`, cloned on first use."""
    use_git_home(mirrors_dir.parent)  # every run starts here: the work folder is known from now on
    path = mirror_path(mirrors_dir, url)
    if (path / "HEAD").exists():
        return path
    with mirror_lock(path):
        if not (path / "HEAD").exists():
            partial = path.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            log.info("cloning %s into %s", url, path)
            git("clone", "--mirror", "--quiet", url, str(partial))
            partial.rename(path)
    return path


def fetch(mirror: Path) -> None:
    log.debug("fetching %s", mirror)
    with mirror_lock(mirror):
        _remove_stale_ref_locks(mirror)
        git("fetch", "--prune", "--quiet", "origin", cwd=mirror)


def _remove_stale_ref_locks(mirror: Path) -> None:
    """A git killed mid-fetch (patchbot was) leaves ref locks that make every later fetch fail.
    Only fetches write refs in the mirror, and we hold the fetch lock: these locks are stale."""
    for stale in [*mirror.glob("refs/**/*.lock"), mirror / "packed-refs.lock", mirror / "config.lock"]:
        if stale.exists():
            log.warning("removing %s, left by a git that was killed", stale)
            stale.unlink(missing_ok=True)


def resolve(mirror: Path, ref: str) -> str | None:
    """The commit a branch, tag or (abbreviated) id names in the mirror, or None."""
    result = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=mirror, check=False)
    return result.stdout.decode().strip() or None if result.returncode == 0 else None


def resolve_fetching(mirror: Path, ref: str, refresh: bool) -> str | None:
    """Resolve a ref, fetching first when asked (branches move) or when it is unknown."""
    if refresh:
        fetch(mirror)
    commit = resolve(mirror, ref)
    if commit is None and not refresh:
        fetch(mirror)
        commit = resolve(mirror, ref)
    return commit


def on_branches(mirror: Path, commit: str, branches: Sequence[str]) -> bool:
    """Whether `commit` is on one of `branches` (reviewed history), not only on some other ref a
    mirror also holds (refs/merge-requests/*, refs/pull/*: anyone's code)."""
    return any(git("merge-base", "--is-ancestor", commit, f"refs/heads/{branch}", cwd=mirror, check=False).returncode == 0
               for branch in dict.fromkeys(branches))


def clean_leftover_worktrees(mirror: Path, worktrees_dir: Path) -> int:
    """Remove worktrees that crashed runs left behind; returns how many were removed.

    A worktree's name carries the pid of the process using it: those of live processes
    (another run going on at the same time) are left alone."""
    removed = 0
    if worktrees_dir.is_dir():
        for leftover in worktrees_dir.iterdir():
            if _owner_alive(leftover.name):
                continue
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    # A `git worktree add` killed half-way leaves its entry locked ("initializing"), which prune
    # skips, and a HEAD naming an object the mirror lacks, which fails every later fetch.
    admin = mirror / "worktrees"
    if admin.is_dir():
        for entry in admin.iterdir():
            if entry.name.startswith("run-") and not _owner_alive(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
    git("worktree", "prune", cwd=mirror, check=False)
    return removed


def _owner_alive(name: str) -> bool:
    """Whether another live process uses this worktree (ours are leftovers: we start now)."""
    match = re.match(r"run-(\d+)-", name)
    if match is None or int(match.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_worktree(mirror: Path, worktree: Path) -> None:
    # Removing the folder and pruning does what `git worktree remove --force` does, in one git run.
    shutil.rmtree(worktree, ignore_errors=True)
    with mirror_lock(mirror):
        git("worktree", "prune", cwd=mirror, check=False)


def apply_series(mirror: Path, base: BaseChoice, patches: Sequence[PatchMail], worktrees_dir: Path) -> Applied:
    """Apply `patches` in order on `base` in a new worktree.

    On success the worktree is left for the suites (the caller removes it with
    remove_worktree); on failure it is removed here and the result names the patch.
    """
    base_commit = resolve(mirror, base.ref)
    if base_commit is None:
        raise GitError(f"the base {base.ref} is not in {mirror}")
    worktrees_dir.mkdir(parents=True, exist_ok=True)
    worktree = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=worktrees_dir))
    # Under the fetch lock: a worktree being added has a placeholder HEAD for a moment, and a
    # fetch at that moment (another worker's) fails its connectivity check on it.
    with mirror_lock(mirror):
        git("worktree", "add", "--detach", "--force", str(worktree), base_commit, cwd=mirror)
    behind = _commits_behind(mirror, base_commit, base.branch)
    for prerequisite in base.prerequisites:
        failure = _am(worktree, prerequisite)
        if failure is not None:
            remove_worktree(mirror, worktree)
            return Applied(False, base, base_commit, None, None, failed_patch=prerequisite.number,
                           failed_total=prerequisite.total, failed_subject=prerequisite.subject,
                           conflicts=failure[0], base_behind_tip=behind, prerequisite_failed=True, detail=failure[1])
    for patch in patches:
        failure = _am(worktree, patch)
        if failure is not None:
            remove_worktree(mirror, worktree)
            return Applied(False, base, base_commit, None, None, failed_patch=patch.number, failed_total=patch.total,
                           failed_subject=patch.subject, conflicts=failure[0], base_behind_tip=behind, detail=failure[1])
    head = git("rev-parse", "HEAD", cwd=worktree).stdout.decode().strip()
    return Applied(True, base, base_commit, worktree, head, base_behind_tip=behind)


def paths_in_tree(mirror: Path, commit: str, paths: Sequence[str]) -> set[str]:
    """Which of `paths` exist (as files or folders) in a commit's tree, read from git's objects
    (literal paths asked of git once); a glob (`test/test_*.py`) exists when a path matches it."""
    literal = [path for path in paths if not is_glob(path)]
    globs = [path for path in paths if is_glob(path)]
    present = set()
    if literal:
        query = "".join(f"{commit}:{path.rstrip('/')}\n" for path in literal).encode()
        result = git("cat-file", "--batch-check", cwd=mirror, stdin=query, check=False)
        answers = result.stdout.decode(errors="replace").splitlines()
        present = {path for path, answer in zip(literal, answers) if not answer.endswith(" missing")}
    for folder in sorted({literal_folder(pattern) for pattern in globs}):
        # Only the folder the glob's matches lie in, with its subfolders (-t: folders match too).
        listed = git("ls-tree", "-r", "-t", "-z", "--name-only", commit, "--", folder or ".", cwd=mirror, check=False)
        names = [name for name in listed.stdout.decode(errors="replace").split("\0") if name]
        present |= {pattern for pattern in globs if literal_folder(pattern) == folder and any(matches(name, [pattern]) for name in names)}
    return present


def _commits_behind(mirror: Path, base_commit: str, branch: str) -> int:
    result = git("rev-list", "--count", f"{base_commit}..{branch}", cwd=mirror, check=False)
    return int(result.stdout.decode().strip() or 0) if result.returncode == 0 else 0


_CONFLICT = re.compile(r"^CONFLICT \([^)]*\): .*? in (\S+)$", re.MULTILINE)
_PATCH_FAILED = re.compile(r"^error: patch failed: (.+):(\d+)$", re.MULTILINE)
_MISSING = re.compile(r"^error: (.+): (?:does not exist in index|No such file or directory)$", re.MULTILINE)


def _am(worktree: Path, patch: PatchMail) -> tuple[tuple[Conflict, ...], str] | None:
    """Apply one mail; None on success, else the conflicts and git's words."""
    mail = patch.raw.replace(b"\r\n", b"\n")  # SMTP delivers CRLF; git am wants LF
    result = git("am", "-3", "--quiet", cwd=worktree, stdin=mail, check=False)
    if result.returncode == 0:
        return None
    output = (result.stdout + result.stderr).decode(errors="replace")
    # Where each hunk failed: ask git apply on the untouched base, which names file and line.
    git("am", "--abort", cwd=worktree, check=False)
    check = git("apply", "--check", "-v", cwd=worktree, stdin=_diff_of(mail), check=False)
    detail = output + check.stderr.decode(errors="replace")
    conflicts: dict[tuple[str, int | None], None] = {}
    for path, line in _PATCH_FAILED.findall(detail):
        conflicts[(path, int(line))] = None
    for path in _MISSING.findall(detail) + _CONFLICT.findall(detail):
        if not any(known == path for known, _ in conflicts):
            conflicts[(path, None)] = None
    return tuple(Conflict(path, line) for path, line in conflicts), _trim(detail)


def _diff_of(mail: bytes) -> bytes:
    """The diff part of a patch mail, for git apply (which, unlike git am, wants no headers)."""
    start = mail.find(b"\ndiff --git ")
    return mail[start + 1:] if start >= 0 else mail


def _trim(text: str, limit: int = 4000) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("hint:")]
    return "\n".join(lines)[-limit:]
