"""Run one untrusted command inside a bubblewrap sandbox, within limits.

The command sees the host's root file system read-only, its worktree (and any extra
writable paths) read-write, a private /tmp, no network (a loopback of its own), no
process outside its own pid namespace, no capabilities, and exactly the environment
it is given. Paths holding the bot's secrets are covered: folders by empty read-only ones,
files by /dev/null on a nodev mount, which cannot even be opened.

How each limit is enforced:

- wall time: by this process, which SIGKILLs bwrap; bwrap's child is pid 1 of the
  sandbox's pid namespace and dies with it (--die-with-parent), and the kernel kills
  every process of a pid namespace whose pid 1 dies;
- processes: a pids cgroup (v1, or v2 where the controller is enabled for our
  children) holding bwrap and everything below it. RLIMIT_NPROC is no substitute:
  the kernel never applies it to uid 0, and the command runs as uid 0 (see
  process_limit_available());
- memory: RLIMIT_AS on each process (so the total is bounded only by max_processes
  times it), and a program past it sees its allocations fail (Python: MemoryError)
  rather than being killed. /tmp and /dev/shm are tmpfs, which is memory too, so
  each is capped at the same size. A memory cgroup would bound the total, but on
  these machines the memory hierarchy places us in a cgroup that is not ours;
- output: kept up to max_output_bytes, the rest drained and counted; past
  OUTPUT_KILL_FACTOR times the limit the command is killed, because nothing useful
  for a reply comes out of a suite that writes that much.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

BWRAP = "/usr/bin/bwrap"

# Output beyond this many times max_output_bytes gets the command killed.
OUTPUT_KILL_FACTOR = 100
READ_CHUNK = 64 * 1024
# How long to wait for the sandbox's pipes to close after SIGKILL before giving up.
KILL_GRACE_S = 5.0
# bwrap messages before the command starts are short; anything longer is noise.
MAX_MESSAGE_BYTES = 4096
# bwrap itself and the sandbox's pid 1 live in the pids cgroup too.
BWRAP_PROCESSES = 2
# Followed by the bot's pid, so that an abandoned cgroup can be told from a busy one.
CGROUP_PREFIX = "patchbot-sandbox-"

# Hidden whatever the caller says. The command runs as uid 0 (without capabilities),
# so files only root may read are readable inside, and its output is mailed to a
# public list: homes hold the bot's configs and credentials (a worktree or venv
# inside one stays visible, as a more specific bind wins), the rest root's secrets.
ALWAYS_HIDDEN = (
    Path.home(),
    Path("/root"),
    Path("/home"),
    Path("/etc/shadow"),
    Path("/etc/gshadow"),
    Path("/etc/ssh"),
    Path("/etc/ssl/private"),
)

# The first thing the command's shell does is mark, on bwrap's stderr, that the
# sandbox is up: anything bwrap printed before the mark explains a failure to start.
# Then the command's stderr joins its stdout.
STARTED_MARK = b"\0"
START_SCRIPT = "printf '\\000' >&2; exec 2>&1; exec \"$@\""

# Stands in the kept output for what was left out between its head and its tail.
OMITTED_LINE = b"\n[... output left out by patchbot ...]\n"


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 600
    memory_bytes: int = 2 * 1024**3
    # Processes and threads, the command's and its children's.
    max_processes: int = 256
    max_output_bytes: int = 10 * 1024**2


@dataclass(frozen=True)
class SandboxSpec:
    argv: tuple[str, ...]
    # Bound read-write at the same path inside.
    worktree: Path
    # Inside the worktree.
    cwd: Path
    # The complete environment inside: nothing is inherited.
    env: Mapping[str, str]
    limits: Limits
    # Extra read-only binds, e.g. a cached venv under a home.
    readonly_paths: tuple[Path, ...] = ()
    # Extra writable binds, e.g. a result directory.
    writable_paths: tuple[Path, ...] = ()
    # Covered by an empty mount inside: the bot's config, database, logs, credentials.
    # Paths that do not exist are skipped.
    hidden_paths: tuple[Path, ...] = ()
    # Only an environment set-up step that downloads its dependencies gets the host's
    # network; a suite never does.
    network: bool = False


class Ending(Enum):
    EXITED = "exited"
    TIMEOUT = "timeout"
    # Killed by a SIGKILL we did not send, which is what the kernel's OOM killer does;
    # a command past RLIMIT_AS usually fails on its own instead and ends EXITED.
    OUT_OF_MEMORY = "out-of-memory"
    # Killed for writing more than OUTPUT_KILL_FACTOR times max_output_bytes. Less
    # than that only sets output_truncated and the command ends as it ends.
    OUTPUT_LIMIT = "output-limit"
    # The sandbox did not start: the command never ran.
    SANDBOX_ERROR = "sandbox-error"


@dataclass(frozen=True)
class SandboxResult:
    ending: Ending
    # bwrap's: the command's exit status, or 128 + signal number; None when killed
    # by us or never started.
    exit_code: int | None
    # stdout and stderr interleaved. When truncated, never more than max_output_bytes:
    # the first half of them, OMITTED_LINE, then the last bytes.
    output: bytes
    output_truncated: bool
    output_bytes_total: int
    duration_s: float
    # For a person: "killed after 30 s wall time", "bwrap: ...", limits not enforced.
    detail: str


def sandbox_available() -> str | None:
    """None if bwrap can build a sandbox here, else the reason it cannot."""
    try:
        run = subprocess.run(
            [BWRAP, *_isolation_options(Limits()), "--", "/bin/true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {BWRAP}: {error}"
    if run.returncode != 0:
        said = run.stderr.decode(errors="replace").strip()
        return said or f"{BWRAP} exited with {run.returncode}"
    return None


def process_limit_available() -> str | None:
    """None if max_processes can be enforced here, else the reason it cannot."""
    try:
        PidsCgroup.create(1).remove()
    except CgroupUnavailable as error:
        return str(error)
    return None


def run_sandboxed(spec: SandboxSpec) -> SandboxResult:
    if not spec.cwd.resolve().is_relative_to(spec.worktree.resolve()):
        raise ValueError(f"cwd {spec.cwd} is not inside the worktree {spec.worktree}")
    notes: list[str] = []
    try:
        cgroup = PidsCgroup.create(spec.limits.max_processes + BWRAP_PROCESSES)
    except CgroupUnavailable as error:
        cgroup = None
        notes.append(f"process limit not enforced: {error}")
    started_at = time.monotonic()
    try:
        watch = _start_and_watch(spec, cgroup, started_at + spec.limits.wall_seconds)
    finally:
        if cgroup:
            try:
                cgroup.remove()
            except OSError as error:
                notes.append(f"cgroup {cgroup.path} left behind: {error}")
    duration = time.monotonic() - started_at
    ending, exit_code, reason = _ending(watch, spec.limits)
    output = watch.output
    if output.truncated:
        notes.append(f"output truncated: kept {len(output.kept())} of {output.total} bytes")
    return SandboxResult(ending, exit_code, output.kept(), output.truncated, output.total,
                         duration, "; ".join([reason, *notes, *watch.problems]))


def _start_and_watch(spec: SandboxSpec, cgroup: PidsCgroup | None, deadline: float) -> Watch:
    try:
        proc = subprocess.Popen(
            [BWRAP, *_bwrap_options(spec), "--", "/bin/sh", "-c", START_SCRIPT,
             "patchbot-sandbox", *spec.argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={},
            preexec_fn=_limit_child(spec.limits, cgroup),
        )
    except (OSError, subprocess.SubprocessError) as error:
        return Watch(KeptOutput(spec.limits.max_output_bytes),
                     messages=f"cannot start {BWRAP}: {error}".encode())
    with proc:
        try:
            watch = _watch(proc, spec.limits, deadline)
        finally:
            proc.kill()
    watch.returncode = proc.returncode
    return watch


def _isolation_options(limits: Limits, network: bool = False) -> list[str]:
    tmpfs_size = str(limits.memory_bytes)
    return [
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--size", tmpfs_size, "--tmpfs", "/dev/shm",
        "--proc", "/proc",
        # bwrap leaves these writable here, and uid 0 may write many of them
        # without capabilities: kernel.pid_max for the whole machine, or a
        # reboot through /proc/sysrq-trigger.
        "--ro-bind", "/proc/sys", "/proc/sys",
        "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
        "--size", tmpfs_size, "--tmpfs", "/tmp",
        *(() if network else ("--unshare-net",)), "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        # As root, bwrap keeps every capability unless told otherwise.
        "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
    ]


def _bwrap_options(spec: SandboxSpec) -> list[str]:
    options = [*_isolation_options(spec.limits, spec.network), *_path_options(spec),
               "--chdir", str(spec.cwd.resolve()), "--clearenv"]
    for name, value in spec.env.items():
        options += ["--setenv", name, value]
    return options


def _path_options(spec: SandboxSpec) -> list[str]:
    """Hide and bind paths, the most specific path last so that it wins."""
    mounts: list[tuple[Path, str]] = []
    for real in dict.fromkeys(path.resolve() for path in (*ALWAYS_HIDDEN, *spec.hidden_paths)):
        if real == Path("/"):
            continue  # the home of some system users; hiding it would hide everything
        if real.is_dir():
            mounts.append((real, "hidden-dir"))
        elif real.exists():
            mounts.append((real, "hidden-file"))
    mounts += [(path.resolve(), "ro") for path in spec.readonly_paths]
    mounts += [(path.resolve(), "rw") for path in (*spec.writable_paths, spec.worktree)]
    mounts.sort(key=lambda mount: len(mount[0].parts))
    options = []
    for path, kind in mounts:
        options += {
            "hidden-dir": ["--tmpfs", str(path)],
            "hidden-file": ["--ro-bind", "/dev/null", str(path)],
            "ro": ["--ro-bind", str(path), str(path)],
            "rw": ["--bind", str(path), str(path)],
        }[kind]
    # Only now: binds inside a hidden directory needed mount points created in it.
    for path, kind in mounts:
        if kind == "hidden-dir":
            options += ["--remount-ro", str(path)]
    return options


def _limit_child(limits: Limits, cgroup: PidsCgroup | None) -> Callable[[], None]:
    """What the child does between fork and exec of bwrap.

    The limits must hold before bwrap forks the sandbox, so they cannot be set from
    here after Popen returns. Only system calls run in the child: it is forked from a
    possibly threaded process.
    """
    procs_file = str(cgroup.path / "cgroup.procs") if cgroup else None
    memory = limits.memory_bytes
    processes = limits.max_processes + BWRAP_PROCESSES

    def limit() -> None:
        if procs_file:
            fd = os.open(procs_file, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        else:
            # Counts every process of the uid and never applies to root, but it is
            # all there is without a cgroup when the bot runs as another user.
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        # A crashing test would otherwise write a core file of up to memory_bytes.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return limit


class CgroupUnavailable(Exception):
    pass


@dataclass(frozen=True)
class PidsCgroup:
    """A fresh cgroup, below our own in the pids hierarchy, capping its tasks."""

    path: Path

    @classmethod
    def create(cls, max_tasks: int) -> PidsCgroup:
        try:
            parent = _own_pids_cgroup()
        except OSError as error:
            raise CgroupUnavailable(f"cannot find our pids cgroup: {error}") from error
        _remove_abandoned_cgroups(parent)
        path = parent / f"{CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
        except OSError as error:
            raise CgroupUnavailable(f"cannot create a cgroup: {error}") from error
        cgroup = cls(path)
        try:
            (path / "pids.max").write_text(str(max_tasks))
        except OSError as error:
            path.rmdir()
            raise CgroupUnavailable(f"no pids controller in {path.parent}: {error}") from error
        return cgroup

    def remove(self) -> None:
        """Kill what is left inside, then remove the cgroup."""
        give_up_at = time.monotonic() + KILL_GRACE_S
        pause = 0.001  # usually a millisecond or two until the kernel has reaped everything
        while True:
            # Normally empty by now: the sandbox's processes die with its pid 1.
            for pid in (self.path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError as error:
                # Killed members leave the cgroup only once the kernel has reaped them.
                if error.errno != errno.EBUSY or time.monotonic() > give_up_at:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def _remove_abandoned_cgroups(parent: Path) -> None:
    """Remove the cgroups of bots that were killed mid-run, named after their pid.

    Their sandboxes died with them (--die-with-parent), but not the directories.
    """
    for path in parent.glob(f"{CGROUP_PREFIX}*"):
        owner = path.name.removeprefix(CGROUP_PREFIX).partition("-")[0]
        if owner.isdigit() and not _is_running(int(owner)):
            with contextlib.suppress(OSError):
                path.rmdir()


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _own_pids_cgroup() -> Path:
    """Our cgroup's directory in the hierarchy that has the pids controller."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, filesystem = line.partition(" - ")
        root, mount_point = fields.split()[3:5]
        fs_type, _, options = filesystem.split()
        if fs_type == "cgroup" and "pids" in options.split(","):
            mounts["pids"] = (root, mount_point)
        elif fs_type == "cgroup2":
            mounts[""] = (root, mount_point)
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, own = line.split(":", 2)
        key = "pids" if "pids" in controllers.split(",") else controllers
        if key in mounts:
            root, mount_point = mounts[key]
            directory = Path(mount_point) / os.path.relpath(own, root)
            if key == "pids" or "pids" in (directory / "cgroup.controllers").read_text().split():
                return directory
    raise CgroupUnavailable("no cgroup hierarchy with the pids controller is mounted")


class KeptOutput:
    """The head and the tail of a stream, never more than max_bytes in memory."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    @property
    def truncated(self) -> bool:
        return self.total > self.max_bytes

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        head_room = max(self.max_bytes // 2 - len(self.head), 0)
        self.head += chunk[:head_room]
        self.tail += chunk[head_room:]
        tail_room = self.max_bytes - len(self.head)
        if len(self.tail) > tail_room:
            # bytearray drops its front without moving the rest.
            del self.tail[:len(self.tail) - tail_room]

    def kept(self) -> bytes:
        if not self.truncated:
            return bytes(self.head + self.tail)
        tail_room = max(self.max_bytes - len(self.head) - len(OMITTED_LINE), 0)
        kept_tail = self.tail[len(self.tail) - tail_room:]
        return bytes(self.head + OMITTED_LINE + kept_tail)[:self.max_bytes]


@dataclass
class Watch:
    """What watching a running sandbox saw."""

    output: KeptOutput
    # What bwrap printed before the command started.
    messages: bytes = b""
    started: bool = False
    returncode: int | None = None
    killed_for: str | None = None
    problems: tuple[str, ...] = ()

    def add_message(self, chunk: bytes) -> None:
        if self.started:
            return
        before, mark, _ = chunk.partition(STARTED_MARK)
        self.messages = (self.messages + before)[:MAX_MESSAGE_BYTES]
        self.started = bool(mark)


def _watch(proc: subprocess.Popen, limits: Limits, deadline: float) -> Watch:
    """Read both pipes until they close, killing the sandbox when it goes too far."""
    watch = Watch(KeptOutput(limits.max_output_bytes))
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, watch.output.add)
    selector.register(proc.stderr, selectors.EVENT_READ, watch.add_message)
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if watch.killed_for:
                watch.problems += ("the sandbox's output stayed open after it was killed",)
                break
            _kill(proc, watch, "timeout")
            deadline = time.monotonic() + KILL_GRACE_S
            continue
        for key, _ in selector.select(remaining):
            chunk = os.read(key.fd, READ_CHUNK)
            if chunk:
                key.data(chunk)
            else:
                selector.unregister(key.fileobj)
        too_much = watch.output.total > limits.max_output_bytes * OUTPUT_KILL_FACTOR
        if too_much and not watch.killed_for:
            _kill(proc, watch, "output")
            deadline = time.monotonic() + KILL_GRACE_S
    selector.close()
    if not watch.killed_for:
        # The command may close its output and keep running.
        try:
            proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            _kill(proc, watch, "timeout")
    return watch


def _kill(proc: subprocess.Popen, watch: Watch, reason: str) -> None:
    watch.killed_for = reason
    proc.kill()


def _ending(watch: Watch, limits: Limits) -> tuple[Ending, int | None, str]:
    if watch.killed_for == "timeout":
        return Ending.TIMEOUT, None, f"killed after {limits.wall_seconds:g} s wall time"
    if watch.killed_for == "output":
        most = limits.max_output_bytes * OUTPUT_KILL_FACTOR
        return Ending.OUTPUT_LIMIT, None, f"killed after writing more than {most} bytes of output"
    if not watch.started:
        said = watch.messages.decode(errors="replace").strip()
        return (Ending.SANDBOX_ERROR, None,
                said or f"{BWRAP} exited with {watch.returncode} before starting the command")
    if watch.returncode == 128 + signal.SIGKILL:
        return (Ending.OUT_OF_MEMORY, watch.returncode,
                "killed by a SIGKILL patchbot did not send, most likely the kernel's OOM killer")
    return Ending.EXITED, watch.returncode, f"exited with code {watch.returncode}"
