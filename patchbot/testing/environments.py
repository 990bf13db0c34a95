"""Build the environments suites run in (a venv, say) from trusted inputs only, once per key.

Why this is long: the rule below is one contract (inputs, where it builds, who may download,
how it is shared and locked); its parts check one another, and reading them apart is how a
key once missed an input.

The rule (RULE_VERSION 2; issue 11 item 5, issue 12 items 2, 3, 5):

- **Inputs.** An environment's inputs are its key files as a commit holds them, read from the
  mirror's git objects (`git ls-tree` and `git cat-file`), never through a worktree: a key file
  that is a symlink is its link text, never followed, so a patch cannot make the bot read,
  hash or hang on a file of the machine (a secret, /proc/self/pagemap). Add the command, the
  versions of `python3` and `php` on the sandbox's PATH, the operator's pinned files
  ([environments.NAME] pinned_files), whether the build has network and whether its files are
  reviewed, and RULE_VERSION: the key is the hash of all of them, so the same inputs reuse the
  same environment, any change builds a new one, and a patch's build is never a reviewed one's.
- **Where it builds.** In a folder holding exactly the key files of that commit (the pinned
  files beside it, in $PATCHBOT_PINNED), never in a worktree: what the command can read is what
  the key covers. An environment holds dependencies, not the project: suites run the project
  from their worktree (`pip install -r requirements.txt`, `poetry install --no-root`).
- **Network only for reviewed files.** The build gets the network (when the environment says
  `network = true`) only for files of a commit on one of the configured branches (the base,
  already reviewed), or for a patch's files a maintainer named with `patchbot: trust-deps`
  (recorded with the digest of exactly those files). A series whose patches change the key
  files gets an environment built from its files without network (`PIP_NO_INDEX=1`, the
  wheel cache as `PIP_FIND_LINKS`, `offline_command` if given): a networked build may fill the
  cache (`pip wheel -w "$PATCHBOT_WHEELS"`), an offline one only reads it. If that fails, its
  suites are not run: "changes dependencies: needs a maintainer's `patchbot: trust-deps`".
- **One build at a time, never half a build.** A build takes a lock per key (flock on a file
  of its own, so threads and processes exclude each other); a second worker waits, then finds
  the finished environment. A venv is not relocatable (its scripts carry absolute paths), so
  it is built in a folder of its own under `.builds/`, where it stays, and is published by
  renaming a symlink `NAME-KEY -> .builds/...` into place: the name appears only when the build
  is complete, and a crash leaves an unpublished folder that the next build of that key removes.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath

from patchbot.testing.apply import git
from patchbot.config.records import Config, EnvironmentConfig
from patchbot.testing.sandbox import Ending, Limits, SandboxSpec, run_sandboxed
from patchbot.testing.reports import Outcome

log = logging.getLogger(__name__)

# Bump when the rule changes what an environment holds: every environment and base result is
# then made anew (base results are keyed by the environment's key, see testrun.suite_key).
RULE_VERSION = 2
# Key files are dependency lists, not data: more than this is refused, not read.
MAX_KEY_BYTES = 8 * 1024 * 1024
MAX_KEY_FILES = 10_000
INTERPRETERS = ("python3", "php")
SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"

NEEDS_TRUST = "changes dependencies: needs a maintainer's `patchbot: trust-deps`"


class EnvironmentFailed(Exception):
    """An environment could not be built from its inputs."""


class Origin(Enum):
    """Whose files an environment is built from, which decides whether it gets the network."""

    BASE = "base"  # a commit on a configured branch: reviewed, may use the network
    TRUSTED = "trusted"  # a patch's files a maintainer trusted: may use the network
    OFFLINE = "offline"  # a patch's files (or an unreviewed base): never the network


@dataclass(frozen=True)
class MissingEnvironment:
    """Why a suite's environment is not there: the machine's failure (INFRA_ERROR), or a patch's
    dependency change that waits for a maintainer (SKIPPED, NEEDS_TRUST)."""

    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class EnvironmentNote:
    """What a run's summary keeps of an environment the tip used (`patchbot: trust-deps` reads it)."""

    name: str
    origin: str  # Origin's value
    changed: bool  # the series changes its key files
    key: str
    files_digest: str
    state: str  # ready | needs-trust | failed

    def as_json(self) -> dict:
        return {"name": self.name, "origin": self.origin, "changed": self.changed, "key": self.key,
                "files_digest": self.files_digest, "state": self.state}


@dataclass(frozen=True)
class KeyFile:
    """One key file as a commit holds it: a symlink's content is its link text."""

    path: str
    mode: str  # git's: 100644, 100755, 120000 (symlink), 160000 (submodule: content is its commit)
    content: bytes


@dataclass(frozen=True)
class Recipe:
    """Everything an environment is built from, and the key that names it."""

    environment: EnvironmentConfig
    commit: str
    files: tuple[KeyFile, ...]
    origin: Origin
    key: str

    @property
    def files_digest(self) -> str:
        """The digest of the key files alone: what `patchbot: trust-deps` trusts."""
        return files_digest(self.files)

    @property
    def networked(self) -> bool:
        return self.environment.network and self.origin is not Origin.OFFLINE

    @property
    def folder_name(self) -> str:
        return f"{self.environment.name}-{self.key}"


def read_key_files(mirror: Path, commit: str, names: Sequence[str]) -> tuple[KeyFile, ...]:
    """The key files (a name may be a folder: every file under it) of `commit`, from git objects."""
    if not names:
        return ()
    listing = git("ls-tree", "-r", "-l", "-z", "--full-tree", commit, "--", *names, cwd=mirror).stdout
    entries = []
    total = 0
    for record in filter(None, listing.split(b"\0")):
        meta, _, path = record.partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        entries.append((path.decode(errors="surrogateescape"), mode, kind, sha))
        total += int(size) if size.isdigit() else 0
    if total > MAX_KEY_BYTES or len(entries) > MAX_KEY_FILES:
        raise EnvironmentFailed(f"its key files ({len(entries)}) hold {total} bytes, more than {MAX_KEY_FILES} files"
                                f" or {MAX_KEY_BYTES} bytes")
    blobs = _blobs(mirror, [sha for _, _, kind, sha in entries if kind == "blob"])
    return tuple(KeyFile(path, mode, blobs[sha] if kind == "blob" else sha.encode())
                 for path, mode, kind, sha in sorted(entries))


def _blobs(mirror: Path, shas: Sequence[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    out = git("cat-file", "--batch", cwd=mirror, stdin="".join(f"{sha}\n" for sha in shas).encode()).stdout
    blobs, position = {}, 0
    for sha in shas:
        end = out.index(b"\n", position)
        _, kind, size = out[position:end].decode().split()
        start = end + 1
        blobs[sha] = out[start:start + int(size)]
        position = start + int(size) + 1
    return blobs


def files_digest(files: Sequence[KeyFile]) -> str:
    digest = hashlib.sha256()
    for file in files:
        for part in (file.path.encode(errors="surrogateescape"), file.mode.encode(), file.content):
            digest.update(len(part).to_bytes(8, "big") + part)  # lengths first: no two lists hash alike
    return digest.hexdigest()


def recipe(environment: EnvironmentConfig, commit: str, files: tuple[KeyFile, ...], origin: Origin,
           config: Config) -> Recipe:
    """What to build and its key: the hash of every input (see the module docstring)."""
    networked = environment.network and origin is not Origin.OFFLINE
    inputs = {
        "rule": RULE_VERSION,
        "command": environment.command if networked or not environment.offline_command else environment.offline_command,
        "networked": networked,
        # A patch's own build never shares a folder with a reviewed one, even where both are
        # offline: code that knows it runs for a patch cannot leave something for the base.
        "reviewed": origin is not Origin.OFFLINE,
        "wheels": str(environment.wheels) if environment.wheels and not networked else None,
        "interpreters": interpreter_versions(tuple(config.path)),
        "pinned": {path.name: _pinned_digest(path) for path in environment.pinned_files},
        "files": files_digest(files),
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return Recipe(environment, commit, files, origin, key)


def _pinned_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:  # the operator's file: checked here, not at start, so a config can move
        raise EnvironmentFailed(f"its pinned file {path.name} cannot be read: {error.strerror}") from None


def interpreter_versions(path: tuple[str, ...]) -> dict[str, str]:
    """`python3 --version` and `php --version` as the sandbox's PATH finds them (the operator's
    programs, not the patch's): a new interpreter means new environments."""
    versions = {}
    for name in INTERPRETERS:
        program = shutil.which(name, path=os.pathsep.join(path))
        if program is None:
            versions[name] = "absent"
            continue
        real = os.path.realpath(program)
        versions[name] = _version_of(real, os.stat(real).st_mtime_ns)  # asked again once the program changes
    return versions


@functools.lru_cache(maxsize=16)
def _version_of(program: str, modified_ns: int) -> str:
    try:
        said = subprocess.run([program, "--version"], capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{program}: {error}"
    return f"{program} {said.stdout.decode(errors='replace').splitlines()[:1]}"


def build(recipe: Recipe, config: Config, cache_dir: Path, hidden: tuple[Path, ...], log_dir: Path | None) -> Path:
    """The environment's folder: the published one, else built now (one builder per key)."""
    link = cache_dir / recipe.folder_name
    ready = _published(link, cache_dir)
    if ready is not None:
        return ready
    with _key_lock(cache_dir, recipe.folder_name):
        ready = _published(link, cache_dir)  # another worker built it while we waited
        if ready is not None:
            return ready
        builds = cache_dir / ".builds"
        builds.mkdir(parents=True, exist_ok=True)
        for leftover in builds.glob(f"{recipe.folder_name}.*"):
            log.warning("removing %s, left by a build that did not finish", leftover.name)
            shutil.rmtree(leftover, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{recipe.folder_name}.", dir=builds))
        try:
            _run_build(recipe, config, folder, wheel_folder(recipe.environment, cache_dir), hidden, log_dir)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        _publish(folder, link)
        return folder


def wheel_folder(environment: EnvironmentConfig, cache_dir: Path) -> Path:
    """The wheel cache: networked (reviewed) builds may add to it, offline builds install from it."""
    return environment.wheels or cache_dir / ".wheels" / environment.name


def _run_build(recipe: Recipe, config: Config, target: Path, wheels: Path, hidden: tuple[Path, ...],
               log_dir: Path | None) -> None:
    environment = recipe.environment
    with tempfile.TemporaryDirectory(prefix=f"{recipe.folder_name}.inputs-", dir=target.parent) as inputs:
        source = Path(inputs) / "src"
        materialise(recipe.files, source)
        pinned = Path(inputs) / "pinned"  # beside the tree's files, so that no name of the tree meets them
        pinned.mkdir()
        for path in environment.pinned_files:
            shutil.copyfile(path, pinned / path.name)
        env = {"PATH": ":".join(config.path), "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
               "PYTHONUNBUFFERED": "1", "PATCHBOT_ENV": str(target), "PATCHBOT_PINNED": str(pinned),
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATCHBOT_ORIGIN": recipe.origin.value}
        command = environment.command
        readonly, writable = [*config.expose, pinned], [target]
        if recipe.networked:
            wheels.mkdir(parents=True, exist_ok=True)
            writable.append(wheels)  # reviewed files only: what they download may serve offline builds
        else:
            env.update(PIP_NO_INDEX="1", PATCHBOT_OFFLINE="1")
            command = environment.offline_command or command
            if wheels.is_dir():
                readonly.append(wheels)  # a patch's build reads the cache, never adds to it
        if wheels.is_dir():
            env.update(PIP_FIND_LINKS=str(wheels), PATCHBOT_WHEELS=str(wheels))
        log.info("building environment %s (%s files of %s, %s) in %s", environment.name, recipe.origin.value,
                 recipe.commit[:12], "with network" if recipe.networked else "without network", target)
        result = run_sandboxed(SandboxSpec(
            argv=("/bin/sh", "-c", command), worktree=source, cwd=source, env=env,
            limits=Limits(wall_seconds=environment.timeout_s, memory_bytes=config.limits.memory_mb * 1024 * 1024,
                          max_processes=config.limits.processes, max_output_bytes=config.limits.output_kb * 1024),
            readonly_paths=tuple(readonly), writable_paths=tuple(writable), hidden_paths=hidden, network=recipe.networked,
        ))
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"environment-{environment.name}-{recipe.origin.value}.log").write_bytes(result.output)
    if result.ending is not Ending.EXITED or result.exit_code != 0:
        tail = result.output[-2000:].decode(errors="replace")
        raise EnvironmentFailed(f"environment {environment.name}: {result.detail or 'exit ' + str(result.exit_code)}\n{tail}")


def materialise(files: Sequence[KeyFile], folder: Path) -> None:
    """Write key files into a new folder. Regular files first, symlinks last, so that no write of
    ours goes through a link; a link is made as the commit has it and only the sandboxed build
    may follow it."""
    folder.mkdir()
    for file in sorted(files, key=lambda file: file.mode == SYMLINK_MODE):
        parts = PurePosixPath(file.path).parts
        if not parts or any(part in ("", ".", "..") for part in parts) or file.mode == SUBMODULE_MODE:
            continue
        path = folder.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if file.mode == SYMLINK_MODE:
            os.symlink(file.content, path)
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if file.mode == "100755" else 0o644)
        with open(fd, "wb") as out:
            out.write(file.content)


def _published(link: Path, cache_dir: Path) -> Path | None:
    """The folder a published name points to, if it is one of our finished builds."""
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    folder = (cache_dir / target).resolve() if not os.path.isabs(target) else Path(target)
    if folder.parent != (cache_dir / ".builds").resolve() or not folder.is_dir():
        return None  # a build removed by hand: build it again
    return folder


def _publish(folder: Path, link: Path) -> None:
    """Rename a new symlink over the name: readers see the old build or the new, never half."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.link")
    temporary.unlink(missing_ok=True)
    os.symlink(os.path.relpath(folder.resolve(), link.parent.resolve()), temporary)
    os.rename(temporary, link)
    directory = os.open(link.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextmanager
def _key_lock(cache_dir: Path, name: str) -> Iterator[None]:
    """flock on a file per key; each call opens it anew, so threads of one process exclude each
    other as processes do."""
    locks = cache_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class RunEnvironments:
    """The environments of one test run, built when first asked for: the base's, from the base
    commit's key files; the tip's, the same one when the series leaves the key files alone, else
    one from the series' files (networked only when a maintainer trusted exactly these files)."""

    def __init__(self, config: Config, cache_dir: Path, hidden: tuple[Path, ...], log_dir: Path,
                 base: dict[str, Recipe], tip: dict[str, Recipe], unreadable: dict[tuple[str, str], MissingEnvironment]):
        self.config, self.cache_dir, self.hidden, self.log_dir = config, cache_dir, hidden, log_dir
        self.base, self.tip = base, tip
        self.unreadable = unreadable  # ("base" or "tip", name): key files that could not be read
        self._built: dict[str, Path | MissingEnvironment] = {}

    @classmethod
    def plan(cls, config: Config, mirror: Path, names: Sequence[str], *, base_commit: str, head: str,
             base_reviewed: bool, trusted: set[tuple[str, str]], cache_dir: Path, hidden: tuple[Path, ...],
             log_dir: Path) -> RunEnvironments:
        """`trusted`: (environment, files digest) pairs a maintainer trusted for this series."""
        base, tip, unreadable = {}, {}, {}
        for name in sorted(names):
            environment = config.environments[name]
            try:
                base_files = read_key_files(mirror, base_commit, environment.key_files)
                base[name] = recipe(environment, base_commit, base_files,
                                    Origin.BASE if base_reviewed else Origin.OFFLINE, config)
            except EnvironmentFailed as error:  # the operator's to look at: the base is reviewed
                unreadable[("base", name)] = unreadable[("tip", name)] = MissingEnvironment(
                    Outcome.INFRA_ERROR, f"environment {name} could not be built on the base: {error}")
                continue
            try:
                tip_files = read_key_files(mirror, head, environment.key_files) if head != base_commit else base_files
            except EnvironmentFailed as error:  # the series made them so
                unreadable[("tip", name)] = MissingEnvironment(Outcome.FAIL, f"environment {name}: {error}")
                continue
            if tip_files == base_files:
                tip[name] = base[name]
            else:
                origin = Origin.TRUSTED if (name, files_digest(tip_files)) in trusted else Origin.OFFLINE
                tip[name] = recipe(environment, head, tip_files, origin, config)
        return cls(config, cache_dir, hidden, log_dir, base, tip, unreadable)

    def for_tip(self) -> tuple[dict[str, Path], dict[str, MissingEnvironment]]:
        return self._prepare(self.tip, "tip")

    def for_base(self) -> tuple[dict[str, Path], dict[str, MissingEnvironment]]:
        return self._prepare(self.base, "base")

    def base_key(self, name: str | None) -> str | None:
        return self.base[name].key if name in self.base else None

    def notes(self) -> list[EnvironmentNote]:
        notes = []
        for name, tip in self.tip.items():
            built = self._built.get(tip.key)
            state = ("ready" if isinstance(built, Path) else "needs-trust" if
                     isinstance(built, MissingEnvironment) and built.outcome is Outcome.SKIPPED else "failed")
            notes.append(EnvironmentNote(name, tip.origin.value, tip is not self.base[name], tip.key, tip.files_digest, state))
        return notes

    def _prepare(self, recipes: dict[str, Recipe], side: str) -> tuple[dict[str, Path], dict[str, MissingEnvironment]]:
        ready = {}
        missing = {name: problem for (which, name), problem in self.unreadable.items() if which == side}
        for name, wanted in recipes.items():
            if wanted.key not in self._built:
                self._built[wanted.key] = self._build(wanted, changed=wanted is not self.base[name])
            built = self._built[wanted.key]
            if isinstance(built, Path):
                ready[name] = built
            else:
                missing[name] = built
        return ready, missing

    def _build(self, wanted: Recipe, changed: bool) -> Path | MissingEnvironment:
        name = wanted.environment.name
        try:
            return build(wanted, self.config, self.cache_dir, self.hidden, self.log_dir)
        except EnvironmentFailed as error:
            log.error("%s", error)
            if not changed:
                first = str(error).splitlines()[0]
                return MissingEnvironment(Outcome.INFRA_ERROR, f"environment {name} could not be built: {first}")
            if wanted.environment.network and wanted.origin is Origin.OFFLINE:
                # The series' dependency files did not build without network: only a maintainer
                # who read them can let them download (issue 12 item 2).
                return MissingEnvironment(Outcome.SKIPPED, f"{NEEDS_TRUST} (environment {name} does not build"
                                                           " from the series' files without network)")
            # Built as the base's would be (no network either way, or trusted): the files are at fault.
            return MissingEnvironment(Outcome.FAIL, f"environment {name} does not build from the series' files")
