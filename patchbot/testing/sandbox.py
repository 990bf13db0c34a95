"""Run one untrusted command inside a bubblewrap sandbox, within limits.

Why this is long: one job, one process: the bwrap command line, the process limit (a pids
cgroup or RLIMIT_NPROC in the sandbox's user namespace) and the watch over its output and time
all act on the same child between fork and exit, and each limit's fallback depends on the others
(see "How each limit is enforced"). Split apart, their order would be spread over modules; the
security tests patch its constants (BWRAP) in this one module.

The sandbox's root is built from an allow-list, so that whatever nobody listed is simply
absent: no socket, file or folder of the bot (its state, config, keys, mirrors, logs, other
worktrees, the LMTP socket Postfix delivers to) exists inside, whatever HOME the service has
and wherever an operator put them. The command sees:

- the system, read-only: /usr and the /bin, /sbin, /lib* links or folders next to it, and
  from /etc only what programs need to start and behave (SYSTEM_ETC); the user and group
  databases and /etc/hosts are written for the sandbox, not copied from the host;
- its worktree (read-write), its environment folder and the operator's `[runner] expose`
  paths (read-only), any extra writable paths: each at the same path as outside;
- a private /tmp (also HOME, whatever the caller asked) and /dev/shm, a minimal /dev, and a
  /proc of its own pid namespace; no /sys, /var, /run, /srv, /home, /root, /opt;
- no network (a loopback of its own, which also gives it its own abstract Unix socket
  namespace), no process outside its own pid namespace, no capabilities, and exactly the
  environment it is given.

How each limit is enforced:

- wall time: by this process, which SIGKILLs bwrap; bwrap's child is pid 1 of the
  sandbox's pid namespace and dies with it (--die-with-parent), and the kernel kills
  every process of a pid namespace whose pid 1 dies;
- processes, per sandbox, so that a fork bomb starves only its own suite: a pids cgroup
  of its own below ours (cgroup v1, or v2 in a subtree delegated to us, as systemd's
  Delegate= gives the service), else, for a bot that is not root, RLIMIT_NPROC set inside
  the sandbox's own user namespace, where the kernel (5.14 and later) counts the processes
  of that namespace alone. A limit set before bwrap starts would count every process of
  the service user, so one suite's bomb would stop the others: that is never done, and
  where neither way exists the sandbox refuses to run (see process_limit_available());
- memory: RLIMIT_AS on each process (so the total is bounded only by max_processes
  times it), and a program past it sees its allocations fail (Python: MemoryError)
  rather than being killed. /tmp and /dev/shm are tmpfs, which is memory too, so
  each is capped at the same size. A memory cgroup would bound the total, but on
  these machines the memory hierarchy places us in a cgroup that is not ours;
- output: kept up to max_output_bytes, the rest drained and counted; past
  OUTPUT_KILL_FACTOR times the limit the command is killed, because nothing useful
  for a reply comes out of a suite that writes that much.

A result's `detail` reaches public replies: it names no path or process id of the host;
those go to the log, for the operator.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import pwd
import grp
import re
import resource
import selectors
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

log = logging.getLogger(__name__)

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
# In a delegated cgroup v2 subtree the service's own processes move here: v2 lets a cgroup
# that hands controllers to its children hold no process itself.
SERVICE_LEAF = "patchbot-service"
# RLIMIT_NPROC has counted processes per user namespace since Linux 5.14 (ucounts).
NAMESPACED_NPROC_KERNEL = (5, 14)

# The system, read-only. On merged-/usr systems the top-level ones are symlinks into /usr
# and are recreated as such; elsewhere they are folders and bound.
SYSTEM_DIRS = ("/usr",)
SYSTEM_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# From /etc, only what programs need; the rest (gitconfig, pip.conf, ssh, ssl/private,
# shadow, machine-id, the MTA's and services' configs) is absent. Globs; missing ones skipped.
SYSTEM_ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d",  # the dynamic linker finds libraries
    "nsswitch.conf",  # where getpwuid() and getaddrinfo() look: the files below
    "alternatives",  # Debian: /usr/bin/php -> /etc/alternatives/php -> /usr/bin/php8.2
    "localtime", "timezone",  # dates in test output, PHP's date.timezone fallback
    "protocols", "services",  # getprotobyname/getservbyname (Perl sockets, PHP streams)
    "ssl/certs", "ssl/openssl.cnf",  # TLS clients (pip in a networked set-up step)
    "php", "perl", "python3", "python3.*",  # the interpreters' own configs (ini, sitecustomize)
    "mime.types", "debian_version", "os-release",  # what a few libraries ask about the system
    "mtab",  # a symlink to ../proc/self/mounts, the sandbox's own
)
# Only a set-up step with network gets the host's name resolution.
NETWORK_ETC = ("resolv.conf", "hosts", "gai.conf", "host.conf")
# Written for the sandbox instead of copied: the host's list users and names hosts.
SANDBOX_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# The sandbox's HOME: its private /tmp. Git and others read and write dotfiles here.
SANDBOX_HOME = Path("/tmp")
# Paths a public message may name: the sandbox's system, never the bot's folders.
PUBLIC_PATH_PREFIXES = ("/usr/", "/bin/", "/etc/", "/dev/", "/proc/", "/tmp/")

# The first thing the command's shell does is set the process limit of its user namespace
# (when that is how processes are limited) and mark, on bwrap's stderr, that the sandbox is
# up: anything bwrap printed before the mark explains a failure to start. Then the
# command's stderr joins its stdout. dash calls the limit -p, bash -u.
STARTED_MARK = b"\0"
START_SCRIPT = (
    'if [ -n "$1" ]; then ulimit -p "$1" 2>/dev/null || ulimit -u "$1" 2>/dev/null ||'
    ' { echo "cannot set the process limit" >&2; exit 125; }; fi; shift; '
    "printf '\\000' >&2; exec 2>&1; exec \"$@\""
)

# Stands in the kept output for what was left out between its head and its tail.
OMITTED_LINE = b"\n[... output left out by patchbot ...]\n"


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 600
    memory_bytes: int = 2 * 1024**3
    # Processes and threads, the command's and its children's, counted per sandbox.
    # 0: no limit, an operator's explicit choice.
    max_processes: int = 256
    max_output_bytes: int = 10 * 1024**2


@dataclass(frozen=True)
class SandboxSpec:
    argv: tuple[str, ...]
    # Bound read-write at the same path inside.
    worktree: Path
    # Inside the worktree.
    cwd: Path
    # The complete environment inside: nothing is inherited. HOME is always the
    # sandbox's private /tmp (or a folder in it).
    env: Mapping[str, str]
    limits: Limits
    # Extra read-only binds: the environment folder, `[runner] expose` paths.
    readonly_paths: tuple[Path, ...] = ()
    # Extra writable binds, e.g. a result directory.
    writable_paths: tuple[Path, ...] = ()
    # Nothing outside the binds above exists inside; these are covered by an empty mount
    # where one of those binds holds them (an exposed folder that also holds a secret).
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
    # For a person, and public: "killed after 30 s wall time", "bwrap: ...". No host
    # paths or process ids: the log has those.
    detail: str


def sandbox_available() -> str | None:
    """None if bwrap can build a sandbox here, else the reason it cannot."""
    try:
        run = subprocess.run(
            [BWRAP, *_system_options(network=False), *_isolation_options(Limits()), "--", "/bin/true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {BWRAP}: {error}"
    if run.returncode != 0:
        said = run.stderr.decode(errors="replace").strip()
        return said or f"{BWRAP} exited with {run.returncode}"
    return None


def process_limit_available() -> str | None:
    """None if each sandbox can get a process limit of its own here, else the reason."""
    try:
        limit = ProcessLimit.create(1)
    except ProcessLimitUnavailable as error:
        return str(error)
    limit.release()
    return None


def run_sandboxed(spec: SandboxSpec) -> SandboxResult:
    if not spec.cwd.resolve().is_relative_to(spec.worktree.resolve()):
        raise ValueError(f"cwd {spec.cwd} is not inside the worktree {spec.worktree}")
    spec = _with_private_home(spec)
    started_at = time.monotonic()
    try:
        limit = ProcessLimit.create(spec.limits.max_processes)
    except ProcessLimitUnavailable as error:
        # Running without a limit of its own would let this suite's fork bomb fail every
        # other suite of the machine: the operator's problem, retried like any other.
        log.error("sandbox refused: %s", error)
        return SandboxResult(Ending.SANDBOX_ERROR, None, b"", False, 0, 0.0,
                             "process limit not enforced: no per-suite limit is possible here")
    try:
        watch = _start_and_watch(spec, limit, started_at + spec.limits.wall_seconds)
    finally:
        limit.release()
    duration = time.monotonic() - started_at
    ending, exit_code, reason = _ending(watch, spec.limits)
    if ending is Ending.SANDBOX_ERROR:
        log.warning("sandbox for %s did not start: %s", spec.worktree, reason)
        reason = _public_message(reason, spec)
    notes: list[str] = []
    output = watch.output
    if output.truncated:
        notes.append(f"output truncated: kept {len(output.kept())} of {output.total} bytes")
    return SandboxResult(ending, exit_code, output.kept(), output.truncated, output.total,
                         duration, "; ".join([reason, *notes, *watch.problems]))


def _with_private_home(spec: SandboxSpec) -> SandboxSpec:
    """The same spec with HOME in the sandbox's private /tmp.

    Git, pip and test tools read and write dotfiles in HOME: a path of the bot's there
    would make them read its configs, or leave files where the next run finds them.
    """
    home = spec.env.get("HOME")
    if home is not None and Path(os.path.normpath(home)).is_relative_to(SANDBOX_HOME):
        return spec
    if home is not None:
        log.warning("sandbox HOME %s replaced by %s", home, SANDBOX_HOME)
    env = {**spec.env, "HOME": str(SANDBOX_HOME)}
    return SandboxSpec(spec.argv, spec.worktree, spec.cwd, env, spec.limits, spec.readonly_paths,
                       spec.writable_paths, spec.hidden_paths, spec.network)


def _public_message(message: str, spec: SandboxSpec) -> str:
    """bwrap's message with the host's paths named by their role, others left out."""
    roles = [(spec.worktree, "the worktree"), (spec.cwd, "the working folder"),
             *((path, "a read-only path") for path in spec.readonly_paths),
             *((path, "a writable path") for path in spec.writable_paths)]
    for path, role in sorted(roles, key=lambda pair: -len(str(pair[0]))):
        for form in {str(path), str(path.resolve())}:
            message = message.replace(form, role)

    def redact(match: re.Match) -> str:
        path = match.group(0)
        public = path == BWRAP or (path + "/").startswith(PUBLIC_PATH_PREFIXES)
        return path if public else "a host path"

    return re.sub(r"/[^\s:'\"]*", redact, message)


def _start_and_watch(spec: SandboxSpec, limit: ProcessLimit, deadline: float) -> Watch:
    files = _sandbox_files(spec.network)
    pipes = []
    try:
        # Small files handed over as pipes bwrap reads: each fits in a pipe's buffer.
        for dest, text in files.items():
            read_end, write_end = os.pipe()
            os.write(write_end, text.encode())
            os.close(write_end)
            pipes.append((read_end, dest))
        options = _bwrap_options(spec, pipes)
        argv = [BWRAP, *options, "--", "/bin/sh", "-c", START_SCRIPT, "patchbot-sandbox",
                limit.inside_namespace, *spec.argv]
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={}, pass_fds=[fd for fd, _ in pipes],
                preexec_fn=_limit_child(spec.limits, limit),
            )
        except (OSError, subprocess.SubprocessError) as error:
            return Watch(KeptOutput(spec.limits.max_output_bytes),
                         messages=f"cannot start {BWRAP}: {error}".encode())
    finally:
        for fd, _ in pipes:
            os.close(fd)
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
        "--dev", "/dev",
        "--size", tmpfs_size, "--tmpfs", "/dev/shm",
        "--proc", "/proc",
        # bwrap leaves these writable here, and uid 0 may write many of them
        # without capabilities: kernel.pid_max for the whole machine, or a
        # reboot through /proc/sysrq-trigger.
        "--ro-bind", "/proc/sys", "/proc/sys",
        "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
        "--size", tmpfs_size, "--tmpfs", "/tmp",
        # A network namespace of its own: no route out, and abstract Unix sockets (which
        # have no file to leave out) are per network namespace too.
        *(() if network else ("--unshare-net",)), "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        # Implied for a bot that is not root (bwrap is not setuid); said so that
        # RLIMIT_NPROC counts this sandbox's processes alone (see ProcessLimit). No user
        # namespace inside it: one would give the command every capability there, the
        # kernel's widest door for unprivileged code.
        *(("--unshare-user", "--disable-userns") if os.geteuid() != 0 else ()),
        # As root, bwrap keeps every capability unless told otherwise.
        "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
    ]


def _system_options(network: bool) -> list[str]:
    """The read-only system part of the root: /usr, its top-level links, part of /etc."""
    options = []
    for path in SYSTEM_DIRS:
        options += ["--ro-bind", path, path]
    for path in SYSTEM_TOP_LEVEL:
        options += _mirror_entry(Path(path))
    names = [*SYSTEM_ETC, *(NETWORK_ETC if network else ())]
    for name in names:
        for found in sorted(glob.glob(f"/etc/{name}")):
            options += _mirror_entry(Path(found), follow=name in NETWORK_ETC)
    return options


def _mirror_entry(path: Path, follow: bool = False) -> list[str]:
    """A symlink recreated (it resolves inside the sandbox), else the file or folder bound.

    With follow, a symlink's target is bound in its place: /etc/resolv.conf may point
    into /run, which the sandbox has not.
    """
    if path.is_symlink() and not follow:
        return ["--symlink", os.readlink(path), str(path)]
    if path.exists():
        return ["--ro-bind", str(path), str(path)]
    return []


def _sandbox_files(network: bool) -> dict[str, str]:
    """Files written for the sandbox: who it runs as (HOME its /tmp), and localhost."""
    uid, gid = os.geteuid(), os.getegid()
    users = {0: "root", uid: _name_of(pwd.getpwuid, uid, "patchbot"), 65534: "nobody"}
    groups = {0: "root", gid: _name_of(grp.getgrgid, gid, "patchbot"), 65534: "nogroup"}
    files = {
        "/etc/passwd": "".join(f"{name}:x:{user}:{gid if user == uid else user}::{SANDBOX_HOME}:/bin/sh\n"
                               for user, name in users.items()),
        "/etc/group": "".join(f"{name}:x:{group}:\n" for group, name in groups.items()),
    }
    if not network:
        files["/etc/hosts"] = SANDBOX_HOSTS
    return files


def _name_of(lookup: Callable, number: int, fallback: str) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return fallback


def _data_options(pipes: list[tuple[int, str]]) -> list[str]:
    options = []
    for fd, dest in pipes:
        options += ["--ro-bind-data", str(fd), dest]
    return options


def _bwrap_options(spec: SandboxSpec, data_pipes: list[tuple[int, str]]) -> list[str]:
    options = [*_system_options(spec.network), *_data_options(data_pipes),
               *_isolation_options(spec.limits, spec.network), *_path_options(spec),
               "--chdir", str(spec.cwd.resolve()), "--clearenv"]
    for name, value in spec.env.items():
        options += ["--setenv", name, value]
    return options


def _path_options(spec: SandboxSpec) -> list[str]:
    """Bind the caller's paths, the most specific last so that it wins, then seal the root."""
    binds = [(path.resolve(), "ro") for path in spec.readonly_paths]
    binds += [(path.resolve(), "rw") for path in (*spec.writable_paths, spec.worktree)]
    mounts = list(binds)
    for real in dict.fromkeys(path.resolve() for path in spec.hidden_paths):
        # Elsewhere it is absent already.
        if not any(real != bound and real.is_relative_to(bound) for bound, _ in binds):
            continue
        if real.is_dir():
            mounts.append((real, "hidden-dir"))
        elif real.exists():
            mounts.append((real, "hidden-file"))
    mounts.sort(key=lambda mount: len(mount[0].parts))
    options = []
    if not any(path.is_relative_to("/var/tmp") for path, _ in mounts):
        # Some tools write there when TMPDIR is not theirs to read: the private /tmp.
        options += ["--symlink", "../tmp", "/var/tmp"]
    for path, kind in mounts:
        options += {
            "hidden-dir": ["--tmpfs", str(path)],
            "hidden-file": ["--ro-bind", "/dev/null", str(path)],
            "ro": ["--ro-bind", str(path), str(path)],
            "rw": ["--bind", str(path), str(path)],
        }[kind]
    # Only now: binds inside a hidden directory needed mount points created in it, and
    # the mount points of everything needed a writable root. The root holds nothing
    # but mount points and symlinks, and uid 0 owns it: seal it.
    for path, kind in mounts:
        if kind == "hidden-dir":
            options += ["--remount-ro", str(path)]
    return [*options, "--remount-ro", "/"]


def _limit_child(limits: Limits, limit: ProcessLimit) -> Callable[[], None]:
    """What the child does between fork and exec of bwrap.

    The limits must hold before bwrap forks the sandbox, so they cannot be set from
    here after Popen returns. Only system calls run in the child: it is forked from a
    possibly threaded process.
    """
    procs_file = str(limit.cgroup / "cgroup.procs") if limit.cgroup else None
    memory = limits.memory_bytes
    nproc_soft, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)

    def limit_here() -> None:
        if procs_file:
            fd = os.open(procs_file, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        if nproc_soft != nproc_hard:
            # The user namespace bwrap makes takes bwrap's RLIMIT_NPROC as the bound of
            # everything in it together: as high as the service allows, so that only the
            # limit set inside, per sandbox, counts.
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc_hard, nproc_hard))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        # A crashing test would otherwise write a core file of up to memory_bytes.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return limit_here


class ProcessLimitUnavailable(Exception):
    pass


# The name the tests and older callers know.
CgroupUnavailable = ProcessLimitUnavailable


@dataclass(frozen=True)
class ProcessLimit:
    """How one sandbox's processes are capped: a pids cgroup of its own, or RLIMIT_NPROC
    set inside its user namespace (then `inside_namespace` is the number, else "")."""

    cgroup: Path | None
    inside_namespace: str

    @classmethod
    def create(cls, max_processes: int) -> ProcessLimit:
        if max_processes <= 0:
            return cls(None, "")
        try:
            return cls(PidsCgroup.create(max_processes + BWRAP_PROCESSES).path, "")
        except ProcessLimitUnavailable as error:
            no_cgroup = error
        if os.geteuid() == 0:
            # The kernel never applies RLIMIT_NPROC to uid 0, in a namespace or not.
            raise ProcessLimitUnavailable(f"running as root without a pids cgroup: {no_cgroup}")
        kernel = tuple(int(part) for part in re.findall(r"\d+", os.uname().release)[:2])
        if kernel < NAMESPACED_NPROC_KERNEL:
            raise ProcessLimitUnavailable(
                f"no pids cgroup ({no_cgroup}) and Linux {os.uname().release} counts "
                "RLIMIT_NPROC per user, not per namespace")
        log.debug("no pids cgroup (%s): RLIMIT_NPROC inside each sandbox's user namespace", no_cgroup)
        # Inside, the sandbox's pid 1 counts too (bwrap outside is in our namespace).
        return cls(None, str(max_processes + BWRAP_PROCESSES - 1))

    def release(self) -> None:
        if self.cgroup is None:
            return
        try:
            PidsCgroup(self.cgroup).remove()
        except OSError as error:
            log.warning("sandbox cgroup %s left behind: %s", self.cgroup, error)


@dataclass(frozen=True)
class PidsCgroup:
    """A fresh cgroup, below our own in the pids hierarchy, capping its tasks."""

    path: Path

    @classmethod
    def create(cls, max_tasks: int) -> PidsCgroup:
        try:
            parent = _own_pids_cgroup(prepare=True)
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


_v2_delegation = threading.Lock()


def _own_pids_cgroup(prepare: bool = False) -> Path:
    """The directory in the pids hierarchy under which sandbox cgroups are made.

    cgroup v1: our own cgroup. cgroup v2: our own when it hands the pids controller to its
    children; for a service that is not root, the cgroup delegated to it (the one our
    SERVICE_LEAF is in), set up to hand it down with prepare (see _delegate_pids_v2); for
    root, the nearest cgroup above that hands it down (root owns every cgroup, so whether
    one was delegated cannot be told, and another's cgroup is not ours to rearrange).
    """
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
        if key not in mounts:
            continue
        root, mount_point = mounts[key]
        directory = Path(os.path.normpath(Path(mount_point) / os.path.relpath(own, root)))
        if key == "pids":
            return directory
        if directory.name == SERVICE_LEAF:
            directory = directory.parent
        if "pids" not in (directory / "cgroup.controllers").read_text().split():
            continue
        if _hands_down_pids(directory):
            return directory
        if os.geteuid() != 0 and directory.stat().st_uid == os.geteuid():
            if prepare:
                _delegate_pids_v2(directory)
            return directory
        if os.geteuid() == 0:
            for above in directory.parents:
                if not above.is_relative_to(mount_point):
                    break
                if _hands_down_pids(above):
                    return above
    raise CgroupUnavailable("no cgroup of ours can have children with the pids controller")


def _hands_down_pids(directory: Path) -> bool:
    return "pids" in (directory / "cgroup.subtree_control").read_text().split()


def _delegate_pids_v2(directory: Path) -> None:
    """Let `directory`'s children (our sandboxes) have the pids controller.

    cgroup v2 allows that only in a cgroup holding no process, so ours (the service's,
    when systemd delegates it) moves to SERVICE_LEAF first. Only this process moves: one
    started before (a git of ours, say) makes the write fail for now, and the next
    sandbox tries again.
    """
    with _v2_delegation:
        if _hands_down_pids(directory):
            return
        leaf = directory / SERVICE_LEAF
        try:
            leaf.mkdir(exist_ok=True)
            if (directory / "cgroup.procs").read_text().split():
                (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (directory / "cgroup.subtree_control").write_text("+pids")
        except OSError as error:
            raise CgroupUnavailable(f"cannot enable the pids controller for our cgroup: {error}") from error
        log.info("pids controller enabled below %s; patchbot moved to %s", directory, leaf)


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
