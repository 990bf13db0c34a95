"""Pull requests as series: what a request-pull mail asks to be pulled, and the merge of it that is tested.

A pull request names a repository and a ref (`are available in the Git repository at:`), and
usually the commit it ends at (`for you to fetch changes up to SHA:`) and the one it starts from
(`The following changes since commit SHA:`). QEMU's maintainers send it as the cover letter
`[PULL 00/29]` of the patches it holds: those are the series' record, the pull is what is tested.

What is fetched is anyone's code, as a patch is: it comes only from the operator's hosts
(`[repository] pull_hosts`, over https:// or git://; local paths and file:// only with
`pull_local`), with every other git protocol and HTTP redirects (which could lead off the list)
refused, into a private ref of the mirror, within a time and a size limit, and no hook or
submodule of it runs. Its code runs only where a patch's does: in the suites' sandbox.
"""

from __future__ import annotations

from patchbot import PatchbotError

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from patchbot.testing.apply import (
    GIT_HARDENING, GIT_IDENTITY, Applied, BaseChoice, Conflict, GitError, apply_series, git, git_environment,
    mirror_lock, remove_worktree, resolve,
)
from patchbot.config.records import RepositoryConfig

# Where fetched pulls live in the mirror while they are tested: no branch, no tag, nothing a
# base is chosen from (apply.on_branches) and nothing the mirror's own fetch keeps (it prunes).
PULL_REFS = "refs/patchbot/pulls"
# What git request-pull writes; a mail client may have wrapped the commit id onto the next line.
_SINCE = re.compile(r"^The following changes since commit\s+([0-9a-fA-F]{7,64}):?[ \t]*$", re.MULTILINE | re.IGNORECASE)
_UP_TO = re.compile(r"^for you to fetch changes up to\s+([0-9a-fA-F]{7,64}):?[ \t]*$", re.MULTILINE | re.IGNORECASE)
_NO_REF = re.compile(r"couldn't find remote ref", re.IGNORECASE)
_NO_REPOSITORY = re.compile(r"does not appear to be a git repository|repository '.*' not found", re.IGNORECASE)
SIZE_POLL_S = 0.2  # how often a fetch's packs are measured against pull_max_mb


@dataclass(frozen=True)
class PullRequest:
    """What a pull request mail asks to be pulled, as its mail says it."""

    url: str
    ref: str | None  # a branch or tag as the remote names it (`for-linus`, `tags/pull-1`); None: its HEAD
    tip: str | None  # the commit it says it ends at
    base: str | None  # the commit it says it starts from


@dataclass(frozen=True)
class PullSource:
    """A URL patchbot may fetch from, and the one git protocol it may use for it."""

    url: str
    protocol: str  # https, git or file


@dataclass(frozen=True)
class Pulled:
    """A pull request fetched and merged onto its base (or why not)."""

    applied: Applied  # a worktree at the merge, as apply_series leaves one; not ok when refused or not merged
    tip: str | None  # the commit fetched
    not_tested: str | None = None  # why it was not fetched or not merged (the pull's, not the machine's)
    paths: tuple[str, ...] = ()  # what the pull changes: base...tip

    def as_json(self, pull: PullRequest) -> dict:
        return {"url": pull.url, "ref": pull.ref, "announced_tip": pull.tip, "announced_base": pull.base,
                "tip": self.tip, "not_tested": self.not_tested}


class PullRefused(PatchbotError):
    """A pull request that is not tested, and the reason its reply gives."""


def parse_pull_request(pull_url: str | None, text: str) -> PullRequest | None:
    """The pull request in a mail: `pull_url` is the `URL REF` line the mail parser found (the one
    that made the mail a pull, mail.diff.find_pull_url), `text` all of the mail's prose (a `---`
    line may come before the request-pull text)."""
    if not pull_url:
        return None
    url, _, ref = pull_url.partition(" ")
    since, up_to = _SINCE.search(text), _UP_TO.search(text)
    return PullRequest(url=url, ref=ref.strip() or None, tip=up_to.group(1).lower() if up_to else None,
                       base=since.group(1).lower() if since else None)


def pull_source(url: str, repository: RepositoryConfig) -> PullSource:
    """Where a pull may be fetched from: an allowed host over https:// or git://, or (with
    pull_local) a local path or file:// URL; PullRefused says why not."""
    if url.startswith("-") or any(not char.isprintable() or char.isspace() for char in url):
        raise PullRefused("its URL is not one git may be given")
    if url.startswith("/") or url.lower().startswith("file://"):
        if not repository.pull_local:
            raise PullRefused("pulls from local paths are not allowed (operator: [repository] pull_local)")
        return PullSource(url, "file")
    scheme, host = _scheme_and_host(url)
    if host not in repository.pull_hosts:
        raise PullRefused(f"pull host {host or '(none)'} is not allowed (operator: [repository] pull_hosts)")
    if scheme not in ("https", "git"):
        raise PullRefused(f"pulls are fetched over https:// or git:// only, not {scheme}")
    return PullSource(url, scheme)


def _scheme_and_host(url: str) -> tuple[str, str]:
    if "://" not in url:  # git@host:path, git's scp-like syntax for ssh
        return "ssh", url.partition("@")[2].partition(":")[0].lower().rstrip(".")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return url.partition("://")[0].lower(), ""
    return parts.scheme.lower(), (parts.hostname or "").rstrip(".")


def checked_ref(ref: str | None) -> str:
    """The ref to fetch, if git takes it for a ref name and nothing else (an option, a refspec)."""
    ref = ref or "HEAD"
    if ref.startswith("-") or ":" in ref or git("check-ref-format", "--allow-onelevel", ref, check=False).returncode:
        raise PullRefused("its ref is not a ref name git accepts")
    return ref


def fetch_pull(mirror: Path, source: PullSource, ref: str, series_id: int, repository: RepositoryConfig) -> str:
    """Fetch `ref` from `source` into the mirror's private ref of the series; the commit it names.

    Only the source's protocol is allowed, redirects are not followed, tags are not fetched
    (they would land among the project's), and what arrives is kept as a pack (fetch.unpackLimit)
    whose growth is watched: over pull_max_mb or pull_timeout, git is killed and the pull refused."""
    target = f"{PULL_REFS}/series-{series_id}"
    limits = ("-c", "protocol.allow=never", "-c", f"protocol.{source.protocol}.allow=always",
              "-c", "http.followRedirects=false", "-c", "fetch.unpackLimit=1", "-c", "submodule.recurse=false")
    args = (*limits, "fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--quiet",
            "--", source.url, f"+{ref}:{target}")
    with mirror_lock(mirror):
        packs = mirror / "objects" / "pack"
        before = set(packs.glob("*")) if packs.is_dir() else set()
        returncode, stderr = _bounded_git(mirror, args, {"GIT_ALLOW_PROTOCOL": source.protocol}, repository,
                                          packs, before)
        if returncode != 0:
            if _NO_REF.search(stderr):
                raise PullRefused(f"{ref} is not in {source.url}")
            if _NO_REPOSITORY.search(stderr):
                raise PullRefused(f"there is no repository at {source.url}")
            raise GitError(f"git fetch {source.url} {ref}: {stderr.strip()[-500:]}")
        brought = sum(path.stat().st_size for path in set(packs.glob("*.pack")) - before)
        if brought > repository.pull_max_mb * 1024 * 1024:  # a fetch quicker than our look at its pack
            git("update-ref", "-d", target, cwd=mirror, check=False)
            raise PullRefused(_too_big(repository))
        tip = resolve(mirror, target)
    if tip is None:
        raise PullRefused(f"{ref} at {source.url} names no commit")
    return tip


def _bounded_git(mirror: Path, args: tuple[str, ...], extra_env: dict[str, str], repository: RepositoryConfig,
                 packs: Path, before: set[Path]) -> tuple[int, str]:
    """Run git within the pull limits: its time, and the packs it writes (tmp_pack_* while it receives)."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(["git", *GIT_IDENTITY, *GIT_HARDENING, *args], cwd=mirror, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=errors, env={**git_environment(), **extra_env},
                                   start_new_session=True)  # its helpers (remote-https, index-pack) are killed with it
        deadline = time.monotonic() + repository.pull_timeout_s
        refusal = None
        while True:
            try:
                process.wait(timeout=max(0.0, min(SIZE_POLL_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                refusal = (f"fetching it took longer than {repository.pull_timeout_s:g} s"
                           " (operator: [repository] pull_timeout)")
            elif _bytes_written(packs, before) > repository.pull_max_mb * 1024 * 1024:
                refusal = _too_big(repository)
            if refusal is not None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                for leftover in set(packs.glob("tmp_*")) - before:  # only this fetch's: ours are under the lock
                    leftover.unlink(missing_ok=True)
                raise PullRefused(refusal)
        errors.seek(0)
        return process.returncode, errors.read().decode(errors="replace")


def _bytes_written(packs: Path, before: set[Path]) -> int:
    total = 0
    for path in set(packs.glob("*")) - before if packs.is_dir() else ():
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # renamed from tmp_pack_* to pack-* as we looked
            pass
    return total


def _too_big(repository: RepositoryConfig) -> str:
    return f"fetching it brought more than {repository.pull_max_mb} MB (operator: [repository] pull_max_mb)"


def apply_pull(mirror: Path, base: BaseChoice, pull: PullRequest, series_id: int, repository: RepositoryConfig,
               worktrees_dir: Path) -> Pulled:
    """Fetch a pull request and merge it onto `base` in a new worktree (`git merge --no-ff` as
    patchbot), as apply_series leaves one for the suites. A pull that may not be fetched, whose
    ref is not where its mail said, or that does not merge, is not ok, with the reason."""
    base_commit = resolve(mirror, base.ref)
    if base_commit is None:
        raise GitError(f"the base {base.ref} is not in {mirror}")
    refused = Applied(False, base, base_commit, None, None)
    try:
        try:
            tip = fetch_pull(mirror, pull_source(pull.url, repository), checked_ref(pull.ref), series_id, repository)
        except PullRefused as refusal:
            return Pulled(refused, None, str(refusal))
        if pull.tip and not tip.startswith(pull.tip):
            return Pulled(refused, tip, f"the branch moved: {pull.ref or 'HEAD'} is at {tip[:12]}, not at"
                                        f" {pull.tip[:12]} as the mail says")
        return _merge(mirror, apply_series(mirror, base, [], worktrees_dir), tip, series_id)
    finally:
        git("update-ref", "-d", f"{PULL_REFS}/series-{series_id}", cwd=mirror, check=False)


def _merge(mirror: Path, on_base: Applied, tip: str, series_id: int) -> Pulled:
    worktree = on_base.worktree
    merged = git("merge", "--no-ff", "--no-edit", "-m", f"Merge the pull request of series {series_id}", tip,
                 cwd=worktree, check=False)
    if merged.returncode != 0:
        unmerged = git("diff", "--name-only", "--diff-filter=U", "-z", cwd=worktree, check=False).stdout
        conflicts = tuple(Conflict(path, None) for path in unmerged.decode(errors="replace").split("\0") if path)
        said = (merged.stdout + merged.stderr).decode(errors="replace").strip().splitlines()
        git("merge", "--abort", cwd=worktree, check=False)
        remove_worktree(mirror, worktree)
        failed = replace(on_base, ok=False, worktree=None, head=None, conflicts=conflicts)
        if conflicts:
            return Pulled(failed, tip, None)
        return Pulled(failed, tip, f"it does not merge: {said[-1] if said else 'git merge failed'}")
    head = git("rev-parse", "HEAD", cwd=worktree).stdout.decode().strip()
    changed = git("diff", "--name-only", "--no-renames", "-z", f"{on_base.base_commit}...{tip}", cwd=mirror).stdout
    paths = tuple(path for path in changed.decode(errors="surrogateescape").split("\0") if path)
    return Pulled(replace(on_base, head=head), tip, None, paths)
