"""Real runs through bwrap: each test says what the sandbox must contain, with small limits."""

import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from patchbot.testing import sandbox
from patchbot.testing.sandbox import Ending, Limits, SandboxSpec, process_limit_available, run_sandboxed

UNAVAILABLE = sandbox.sandbox_available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no sandbox here: {UNAVAILABLE}")
NO_PROCESS_LIMIT = process_limit_available()

SMALL = Limits(wall_seconds=10, memory_bytes=512 * 1024**2, max_processes=64,
               max_output_bytes=64 * 1024)
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture
def worktree(tmp_path):
    path = tmp_path / "worktree"
    path.mkdir()
    return path


@pytest.fixture
def outside_tmp():
    """A host directory outside /tmp (which the sandbox replaces with its own): absent inside
    unless bound, and the mount point of what is bound below it."""
    path = Path(tempfile.mkdtemp(prefix="patchbot-test-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path)


def run(worktree: Path, argv, limits: Limits = SMALL, env_home: str | None = None, **spec_fields):
    # The interpreter and the venv are not system folders: absent unless bound.
    readonly = (Path(sys.base_prefix), Path(sys.prefix), *spec_fields.pop("readonly_paths", ()))
    env = {**ENV, "HOME": env_home} if env_home else ENV
    spec = SandboxSpec(argv=tuple(argv), worktree=worktree, cwd=worktree, env=env,
                       limits=limits, readonly_paths=readonly, **spec_fields)
    return run_sandboxed(spec)


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def processes_with(marker: str) -> str:
    return subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout


def test_output_and_exit_code_are_captured(worktree):
    result = run(worktree, ["sh", "-c", "echo out; echo err >&2"])

    assert (result.ending, result.exit_code) == (Ending.EXITED, 0)
    assert result.output == b"out\nerr\n"
    assert (result.output_truncated, result.output_bytes_total) == (False, 8)


def test_nonzero_exit_is_exited_with_its_code(worktree):
    result = run(worktree, ["sh", "-c", "exit 3"])

    assert (result.ending, result.exit_code) == (Ending.EXITED, 3)
    assert result.detail == "exited with code 3"


def test_network_is_unreachable_even_on_loopback(worktree):
    server = socket.create_server(("0.0.0.0", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    targets = [("127.0.0.1", port), ("1.1.1.1", 80)]
    try:
        # The host's own address on its default route, without sending anything.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("198.51.100.1", 9))
            targets.append((probe.getsockname()[0], port))
    except OSError:
        pass

    result = run(worktree, python("""
        import socket, sys
        for host, port in [tuple(t.split(":")) for t in sys.argv[1:]]:
            try:
                socket.create_connection((host, int(port)), timeout=2)
                print("connected", host)
            except OSError as error:
                print("failed", host, error)
        try:
            socket.getaddrinfo("example.org", 80)
            print("resolved example.org")
        except OSError as error:
            print("failed example.org", error)
        """, *[f"{host}:{port}" for host, port in targets]))

    with server:
        with pytest.raises(BlockingIOError):
            server.accept()
    assert result.ending == Ending.EXITED, result.detail
    lines = result.output.decode().splitlines()
    assert len(lines) == len(targets) + 1
    assert all(line.startswith("failed") for line in lines), lines


def test_hidden_paths_and_the_bots_environment_stay_outside(worktree, outside_tmp, monkeypatch):
    monkeypatch.setenv("PATCHBOT_SMTP_PASSWORD", "hunter2-smtp")
    # The secrets sit inside a directory the command may read, so only hiding keeps them out.
    shared = outside_tmp / "shared"
    (shared / "botconf").mkdir(parents=True)
    (shared / "botconf" / "patchbot.toml").write_text('smtp_password = "hunter2-config"\n')
    (shared / "token").write_text("hunter2-token\n")
    (shared / "public.txt").write_text("readable\n")

    result = run(worktree, python("""
        import os, sys
        for name in sys.argv[1:]:
            try:
                print(name, repr(open(name).read()))
            except OSError as error:
                print(name, "unreadable:", error.strerror)
        print("env", *sorted(os.environ))
        """, str(shared / "public.txt"), str(shared / "botconf" / "patchbot.toml"),
        str(shared / "token"), "/etc/shadow"),
        readonly_paths=(shared,), hidden_paths=(shared / "botconf", shared / "token"))

    assert result.ending == Ending.EXITED, result.detail
    output = result.output.decode()
    assert "public.txt 'readable\\n'" in output
    assert "hunter2" not in output
    assert f"{shared / 'botconf' / 'patchbot.toml'} unreadable" in output
    assert f"{shared / 'token'} unreadable" in output
    assert "/etc/shadow unreadable" in output
    env_names = set(output.splitlines()[-1].split()[1:])
    # The shell that starts the command adds PWD; HOME is always the private /tmp.
    assert env_names <= set(ENV) | {"PWD", "HOME"}


def test_writes_land_only_in_the_worktree_writable_paths_and_a_private_tmp(
        worktree, tmp_path, outside_tmp):
    results_dir = outside_tmp / "results"
    results_dir.mkdir()
    host_only = Path("/tmp") / f"patchbot-host-only-{uuid.uuid4().hex}"
    host_only.write_text("host\n")
    inside_tmp = Path("/tmp") / f"patchbot-inside-{uuid.uuid4().hex}"
    try:
        result = run(worktree, python("""
            import sys
            for name in sys.argv[1:]:
                try:
                    open(name, "w").write("written\\n")
                    print("wrote", name)
                except OSError as error:
                    print("refused", name, error.strerror)
            """, str(worktree / "out.txt"), str(results_dir / "junit.xml"), str(inside_tmp),
            str(outside_tmp / "escape.txt"), "/etc/patchbot-escape", str(tmp_path / "escape.txt")),
            writable_paths=(results_dir,))
        host_only_seen = run(worktree, ["cat", str(host_only)])
    finally:
        host_only.unlink()
        inside_tmp.unlink(missing_ok=True)

    lines = result.output.decode().splitlines()
    assert lines[:3] == [f"wrote {worktree / 'out.txt'}", f"wrote {results_dir / 'junit.xml'}",
                         f"wrote {inside_tmp}"]
    assert lines[3:5] == [f"refused {outside_tmp / 'escape.txt'} Read-only file system",
                          "refused /etc/patchbot-escape Read-only file system"]
    # tmp_path is under /tmp, so this one went to the sandbox's own /tmp.
    assert lines[5] == f"wrote {tmp_path / 'escape.txt'}"
    assert (worktree / "out.txt").read_text() == "written\n"
    assert (results_dir / "junit.xml").read_text() == "written\n"
    assert not inside_tmp.exists()
    assert not (outside_tmp / "escape.txt").exists()
    assert not Path("/etc/patchbot-escape").exists()
    assert not (tmp_path / "escape.txt").exists()
    assert host_only_seen.exit_code == 1 and b"No such file" in host_only_seen.output


def test_command_has_no_capabilities_and_cannot_tune_the_kernel(worktree):
    # It runs as uid 0: only missing capabilities and read-only mounts stop it.
    # The host name is per namespace, so a failure here would not touch the host.
    result = run(worktree, python("""
        import socket
        print([line for line in open("/proc/self/status") if line.startswith("CapEff")])
        try:
            socket.sethostname("sandboxed")
            print("renamed")
        except OSError as error:
            print("sethostname:", error.strerror)
        try:
            open("/proc/sys/kernel/hostname", "w").write("sandboxed")
            print("wrote the sysctl")
        except OSError as error:
            print("sysctl:", error.strerror)
        """))

    assert result.output.decode().splitlines() == [
        "['CapEff:\\t0000000000000000\\n']",
        "sethostname: Operation not permitted",
        "sysctl: Read-only file system",
    ]


def test_sandbox_dies_with_the_bot(worktree):
    marker = f"patchbot-orphan-{uuid.uuid4().hex}"
    inside = f"{marker}-inside"
    bot = subprocess.Popen(python("""
        import sys
        from pathlib import Path
        from patchbot.testing.sandbox import Limits, SandboxSpec, run_sandboxed
        worktree, python, marker = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
        forker = "import os, time; os.fork(); time.sleep(60)"
        run_sandboxed(SandboxSpec((python, "-c", forker, marker + "-inside"), worktree, worktree,
                                  {}, Limits(wall_seconds=60),
                                  readonly_paths=(Path(sys.base_prefix), Path(sys.prefix))))
        """, str(worktree), sys.executable, marker))
    try:
        give_up_at = time.monotonic() + 10
        while len(sandboxed_pythons(inside)) < 2 and time.monotonic() < give_up_at:
            time.sleep(0.05)
        assert len(sandboxed_pythons(inside)) == 2
    finally:
        bot.kill()
        bot.wait()

    give_up_at = time.monotonic() + 2
    while processes_with(inside) and time.monotonic() < give_up_at:
        time.sleep(0.05)
    assert processes_with(inside) == ""
    if process_limit_available() is None:
        # Checking that the limit is available removed the dead bot's cgroup.
        assert list(sandbox._own_pids_cgroup().glob(f"{sandbox.CGROUP_PREFIX}{bot.pid}-*")) == []


def sandboxed_pythons(marker: str) -> list[str]:
    """The command's processes, leaving out the bwrap processes that carry its argv."""
    return [line for line in processes_with(marker).splitlines()
            if not line.split()[1].endswith("bwrap")]


@pytest.mark.skipif(NO_PROCESS_LIMIT is not None,
                    reason=f"a fork bomb is unsafe here: {NO_PROCESS_LIMIT}")
def test_fork_bomb_is_contained_and_leaves_no_process(worktree):
    marker = f"patchbot-forkbomb-{uuid.uuid4().hex}"
    limits = Limits(wall_seconds=5, memory_bytes=512 * 1024**2, max_processes=64,
                    max_output_bytes=64 * 1024)

    result = run(worktree, python("""
        import os, time
        refused = False
        while True:
            try:
                os.fork()
            except OSError:
                if not refused:
                    print("fork refused", flush=True)
                    refused = True
                time.sleep(0.01)
        """, marker), limits=limits)

    assert result.ending in (Ending.TIMEOUT, Ending.EXITED), result.detail
    assert result.duration_s < limits.wall_seconds + 3
    assert b"fork refused" in result.output
    assert processes_with(marker) == ""


def test_endless_loop_is_killed_at_the_wall_limit(worktree):
    marker = f"patchbot-loop-{uuid.uuid4().hex}"
    limits = Limits(wall_seconds=2, memory_bytes=512 * 1024**2, max_processes=64)

    result = run(worktree, ["sh", "-c", "while :; do :; done", marker], limits=limits)

    assert (result.ending, result.exit_code) == (Ending.TIMEOUT, None)
    assert result.detail == "killed after 2 s wall time"
    assert 2 <= result.duration_s < 4
    assert processes_with(marker) == ""


def test_memory_eater_fails_within_the_memory_limit(worktree):
    limits = Limits(wall_seconds=20, memory_bytes=256 * 1024**2, max_processes=64)

    result = run(worktree, python("""
        chunks = []
        while True:
            chunks.append(bytearray(100 * 1024 * 1024))
        """), limits=limits)

    assert result.ending in (Ending.EXITED, Ending.OUT_OF_MEMORY), result.detail
    assert result.exit_code != 0
    assert b"MemoryError" in result.output
    assert result.duration_s < 10


def test_a_gigabyte_of_output_costs_neither_a_gigabyte_nor_long(worktree):
    limits = Limits(wall_seconds=30, memory_bytes=512 * 1024**2, max_processes=64,
                    max_output_bytes=1024**2)
    peak_rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    result = run(worktree, ["head", "-c", "1G", "/dev/zero"], limits=limits)

    peak_rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert len(result.output) <= 1024**2
    assert result.output_truncated
    assert result.ending == Ending.OUTPUT_LIMIT, result.detail
    assert result.output_bytes_total > 100 * 1024**2
    assert "killed after writing more than" in result.detail
    assert peak_rss_after - peak_rss_before < 100 * 1024**2


def test_truncated_output_keeps_its_head_and_its_tail(worktree):
    result = run(worktree, ["seq", "1", "200000"])

    assert result.ending == Ending.EXITED
    assert result.output_truncated
    assert result.output_bytes_total == len("".join(f"{n}\n" for n in range(1, 200001)))
    assert len(result.output) <= SMALL.max_output_bytes
    assert result.output.startswith(b"1\n2\n3\n")
    assert result.output.endswith(b"199999\n200000\n")
    assert sandbox.OMITTED_LINE in result.output


def test_missing_worktree_is_a_sandbox_error(tmp_path):
    missing = tmp_path / "no-such-worktree"

    result = run(missing, ["true"])

    assert (result.ending, result.exit_code) == (Ending.SANDBOX_ERROR, None)
    # The detail reaches public replies: the path's role, never the host's path.
    assert result.detail == "bwrap: Can't find source path the worktree: No such file or directory"
    assert str(tmp_path) not in result.detail


def test_missing_bwrap_is_a_sandbox_error(worktree, monkeypatch):
    monkeypatch.setattr(sandbox, "BWRAP", "/nonexistent/bwrap")

    result = run(worktree, ["true"])

    assert result.ending == Ending.SANDBOX_ERROR
    assert result.detail.startswith("cannot start /nonexistent/bwrap")


def test_the_root_holds_only_the_allow_list(worktree, outside_tmp):
    exposed = outside_tmp / "exposed"
    exposed.mkdir()
    (outside_tmp / "next-to-exposed").write_text("not listed\n")

    result = run(worktree, python("""
        import os, sys
        print(sorted(os.listdir("/")))
        print(sorted(os.listdir("/etc")))
        print(sorted(os.listdir(sys.argv[1])))
        print(os.listdir("/var"), os.listdir("/var/tmp"))
        print(open("/etc/passwd").read().count("\\n"), os.environ["HOME"])
        """, str(outside_tmp)), readonly_paths=(exposed,))

    assert result.ending == Ending.EXITED, result.detail
    top, etc, outside, var, passwd = result.output.decode().splitlines()
    # The folders of /usr's top-level links, mount points of the bound paths, and the
    # sandbox's own /dev, /proc, /tmp. No /sys, /run, /srv, /home, /root, /opt.
    prefix_tops = {Path(path).parts[1] for path in (worktree, outside_tmp, sys.base_prefix, sys.prefix)}
    expected = {"usr", "bin", "sbin", "lib", "lib64", "dev", "proc", "tmp", "etc", "var"} | prefix_tops
    assert set(eval(top)) <= expected | {"lib32", "libx32"}, top
    assert not {"sys", "run", "srv", "home", "opt", "boot", "mnt"} & set(eval(top)) - prefix_tops
    assert not {"shadow", "gitconfig", "ssh", "pip.conf", "machine-id", "resolv.conf"} & set(eval(etc)), etc
    assert {"passwd", "group", "hosts", "ld.so.cache", "nsswitch.conf"} <= set(eval(etc)), etc
    assert eval(outside) == ["exposed"]
    # Only the way to the bound folder: other folders of /var/tmp are not there.
    assert var == f"['tmp'] [{outside_tmp.name!r}]"
    # root, the bot's own user and nobody (one line each, the same when the bot is root)
    assert int(passwd.split()[0]) <= 3 and passwd.split()[1] == "/tmp"


def test_home_is_the_private_tmp_whatever_the_caller_says(worktree):
    # git reads HOME's .gitconfig: a bot path here would let a suite's earlier write (or
    # the bot's own config) steer git; /tmp is the sandbox's own and goes with it.
    result = run(worktree, ["sh", "-c", 'echo "$HOME"; git config --global user.name Mallory && '
                            'git config --global --list; ls -a "$HOME"'],
                 env_home="/root")

    assert result.ending == Ending.EXITED and result.exit_code == 0, result.output
    lines = result.output.decode().splitlines()
    assert lines[0] == "/tmp"
    assert "user.name=Mallory" in lines
    assert ".gitconfig" in lines


def test_the_system_tools_suites_use_run_inside(worktree):
    (worktree / "t.sh").write_text("echo 1..1; echo ok 1 - runs\n")
    (worktree / "Makefile").write_text("all:\n\t@echo made\n")
    script = " && ".join([
        "php -r 'echo PHP_VERSION > 0 ? \"php\\n\" : \"\"; new PDO(\"sqlite::memory:\");'",
        "perl -e 'print qq(perl\\n)'",
        "prove -e sh t.sh >/dev/null && echo prove",
        "make -s",
        "sqlite3 :memory: 'select 40+2;'",
        "git init -q /tmp/repo && git -C /tmp/repo -c user.name=a -c user.email=a@b commit -q "
        "--allow-empty -m x && echo git",
        "python3 -c 'import ssl, sqlite3; print(\"python3\")'",
        "id -un",
    ])
    present = [tool for tool in ("php", "perl", "prove", "make", "sqlite3", "git", "python3")
               if shutil.which(tool, path="/usr/bin:/bin")]
    if len(present) < 7:
        pytest.skip(f"only {present} installed")

    result = run(worktree, ["sh", "-c", script])

    assert (result.ending, result.exit_code) == (Ending.EXITED, 0), result.output
    assert result.output.decode().splitlines()[:7] == ["php", "perl", "prove", "made", "42", "git", "python3"]
