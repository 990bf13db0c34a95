"""`patchbot: apply <branch> <vN|commit> [force]`: apply the tested series, with its reviews, to a branch and push.

The maintainer names what they mean to push: the series' version (`v2`) or the tip commit of
its last test (7 or more hex digits, as `patchbot: status` shows it), so that a command in
the wrong thread (or one a thread's ids lead elsewhere) pushes nothing. The series is applied
from a fresh fetch of the push remote's branch, one patch at a time (authorship kept, as
`git am` keeps it); each commit gets the Reviewed-by, Acked-by and Tested-by trailers that
replies in the thread gave with their own address, from a sender that passes the same check
as a command (identity.py: DKIM when required); a reply to one patch reviews that patch, any
other reply the whole series. Then HEAD is pushed.
"""

from __future__ import annotations

import re

from patchbot.testing.apply import (
    BaseChoice, GitError, PatchMail, apply_series, ensure_mirror, fetch, git, remove_worktree, resolve,
)
from patchbot.commands.protocol import CommandContext, CommandOutcome, latest_run_of_current
from patchbot.commands.authorize import MAINTAINER
from patchbot.commands.identity import identify
from patchbot.config.records import Config
from patchbot.mail.headers import address_of
from patchbot.store.database import Store
from patchbot.store.records import SeriesRecord

REVIEW_TRAILERS = ("Reviewed-by", "Acked-by", "Tested-by")
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,200}$")
_VERSION = re.compile(r"^[vV]([0-9]{1,4})$")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,40}$")


class Apply:
    name = "apply"
    arguments = "<branch> <vN|commit> [force]"
    allowed = (MAINTAINER,)
    description = ("apply the tested series with the thread's Reviewed-by/Acked-by/Tested-by to <branch>"
                   " and push it; name the series' version (v2) or its tested tip commit, so that only"
                   " the series you mean is pushed; refused when it has new failures, unless \"force\"")

    def run(self, context: CommandContext, series: SeriesRecord, args: tuple[str, ...]) -> CommandOutcome:
        if series.kind == "pull":
            # Applying means git am of the patch mails; a pull request's code is its fetched
            # branch, which its maintainer merges (as the tested merge did) with git pull.
            where = f" {series.pull.url} {series.pull.ref or ''}".rstrip() if series.pull else ""
            return CommandOutcome.refused("this is a pull request: patchbot applies patch series only;"
                                          f" merge it with \"git pull{where}\"")
        force = bool(args) and args[-1] == "force"
        named = args[:-1] if force else args
        if len(named) != 2:
            return CommandOutcome.refused(
                "apply takes a branch and what to apply: the series' version or the tip commit of its last test,"
                " then \"force\" to apply despite new failures (this thread's series is"
                f" v{series.version} of \"{series.title}\": \"patchbot: apply master v{series.version}\")")
        branch, which = named
        if not _BRANCH.match(branch) or ".." in branch or branch.endswith((".lock", "/")):
            return CommandOutcome.ignored(f"{branch!r} is not a branch name")
        repository = context.config.repository
        if repository is None or repository.push_url is None:
            return CommandOutcome.refused("no remote to push to: [repository] push_url is not configured")
        run = latest_run_of_current(context, series)
        if isinstance(run, CommandOutcome):
            return run
        mismatch = _not_this_series(which, series, run.summary.get("head"))
        if mismatch:
            return CommandOutcome.refused(mismatch)
        if not run.summary["applied"]:
            return CommandOutcome.refused(f"this series did not apply when it was tested (run {run.id})")
        new = sum(len(suite["new_failures"]) for suite in run.summary["suites"])
        if new and not force:
            return CommandOutcome.refused(
                f"its last test (run {run.id}) found {new} new failure{'s' if new != 1 else ''};"
                f" \"patchbot: apply {branch} {which} force\" applies it anyway")
        unjudged = [suite["name"] for suite in run.summary["suites"] if suite["status"] in ("infra-error", "timeout")]
        if unjudged and not force:
            return CommandOutcome.refused(
                f"its last test (run {run.id}) could not judge it: {', '.join(unjudged)} did not give a result;"
                f" \"patchbot: apply {branch} {which} force\" applies it anyway")
        return _apply_and_push(context, series, branch, repository.push_url)


def _not_this_series(which: str, series: SeriesRecord, tip: str | None) -> str | None:
    """Why `which` (vN or a commit id) does not name this series' tested version, or None."""
    this = f"this thread's series is v{series.version} of \"{series.title}\""
    if (match := _VERSION.match(which)) is not None:
        if int(match.group(1)) != series.version:
            return f"{this}, not {which.lower()}"
        return None
    if _COMMIT.match(which):
        if not tip or not tip.startswith(which.lower()):
            return f"{this}; its last test's tip commit is {tip[:12] if tip else 'unknown'}, not {which}"
        return None
    return f"{which!r} is neither a version (v{series.version}) nor a commit id (7 or more hex digits)"


def _apply_and_push(context: CommandContext, series: SeriesRecord, branch: str, push_url: str) -> CommandOutcome:
    mirror = ensure_mirror(push_url, context.work / "mirrors")
    fetch(mirror)
    base = resolve(mirror, branch)
    if base is None:
        return CommandOutcome.refused(f"{push_url} has no branch {branch}")
    total = series.total or len(series.patches)
    patches = [PatchMail(slot.number, total, slot.subject, context.store.raw_mail(slot.mail_id)) for slot in series.patches]
    applied = apply_series(mirror, BaseChoice(base, f"{branch} of {push_url}", branch), patches, context.work / "worktrees")
    if not applied.ok:
        return CommandOutcome.refused(f"patch {applied.failed_patch}/{applied.failed_total} does not apply on {branch}"
                                      f" ({base[:12]}) any more")
    trailers = collected_trailers(context.store, context.config, series)
    worktree = applied.worktree
    try:
        commits = git("rev-list", "--reverse", f"{base}..HEAD", cwd=worktree).stdout.decode().split()
        if len(commits) != len(patches):
            raise GitError(f"{len(patches)} patches made {len(commits)} commits")
        # Rebuild the commits one by one so that each gets its own trailers; cherry-pick keeps the author.
        git("reset", "--hard", "--quiet", base, cwd=worktree)
        for slot, commit in zip(series.patches, commits):
            git("cherry-pick", "--allow-empty", commit, cwd=worktree)
            added = [argument for trailer in trailers[slot.number] for argument in ("--trailer", trailer)]
            if added:
                git("-c", "trailer.ifexists=addIfDifferent", "commit", "--amend", "--no-edit", "--quiet", *added, cwd=worktree)
        pushed = git("push", "--quiet", push_url, f"HEAD:refs/heads/{branch}", cwd=worktree, check=False)
        if pushed.returncode != 0:
            return CommandOutcome.refused(f"the push to {branch} failed: {pushed.stderr.decode(errors='replace').strip()}")
        log = git("log", "--reverse", "--format=%H %s", f"{base}..HEAD", cwd=worktree).stdout.decode().splitlines()
    finally:
        remove_worktree(mirror, worktree)
    added_count = sum(len(values) for values in trailers.values())
    lines = "\n".join(f"  {line[:12]}{line[40:]}" for line in log)
    return CommandOutcome.done(f"applied to {branch} and pushed ({added_count} review trailer"
                               f"{'s' if added_count != 1 else ''} added):\n{lines}")


def collected_trailers(store: Store, config: Config, series: SeriesRecord) -> dict[int, list[str]]:
    """Per patch number, the review trailers to add: only those whose address is the reply's
    sender, as identity.py believes it (an unsigned reply carrying `Reviewed-by: Linus
    Torvalds <torvalds@...>` from a forged From got into the pushed commit)."""
    numbers = {slot.message_id: slot.number for slot in series.patches}
    found: dict[int, list[str]] = {slot.number: [] for slot in series.patches}
    for mail in store.mails_of_series(series.id):
        facts = mail.facts
        if facts is None or facts.kind in ("patch", "cover", "pull"):
            continue
        reviews = [trailer for trailer in facts.trailers if trailer.name in REVIEW_TRAILERS]
        if not reviews:
            continue
        sender = identify(store.raw_mail(mail.id), mail, config, store)
        if sender.refusal is not None:
            continue
        for trailer in reviews:
            who = address_of(trailer.value)
            if who is None or who.addr.lower() != sender.address:
                continue
            target = _patch_answered(store, facts.in_reply_to, numbers)
            text = f"{trailer.name}: {trailer.value}"
            for number in ([target] if target is not None else list(found)):
                if text not in found[number]:
                    found[number].append(text)
    return found


def _patch_answered(store: Store, parent: str | None, numbers: dict[str, int]) -> int | None:
    """The patch a reply is (ultimately) an answer to; None for the cover letter or the thread."""
    for _ in range(100):  # a loop of In-Reply-To cannot hold us
        if parent is None:
            return None
        if parent in numbers:
            return numbers[parent]
        record = store.mail(parent)
        parent = record.facts.in_reply_to if record and record.facts else None
    return None


COMMANDS = (Apply(),)
