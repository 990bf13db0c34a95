"""Containment, through `patchbot test`: a patch whose test attacks the machine is contained,
reported, and the bot carries on.

Each test goes through the whole pipeline: a contributor adds a test under test/python/ that does
the harm (so the series touches the python stack: suites python and parity run), formats the
patch, the bot ingests it and runs `patchbot test --json`. The test then checks, from outside
the sandbox, that the harm did not happen; that the JSON reports it sensibly; and that the same
bot (same database and work directory) then tests a harmless series normally.

The bot's own files (config, database, work directory) live under /var/tmp, not under pytest's
tmp_path: the sandbox mounts its own /tmp, so anything under /tmp is out of sight anyway and
hiding the bot's files would go untested. A bot in production keeps them in /srv or /var/lib,
visible to the sandbox unless hidden.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import Contributor, write_sample_config

from patchbot.testing.sandbox import CGROUP_PREFIX, OUTPUT_KILL_FACTOR, _own_pids_cgroup


# Small limits keep the module quick: an endless test costs SUITE_TIMEOUT_S.
MEMORY_MB = 512
PROCESSES = 64
OUTPUT_KB = 1024
SUITE_TIMEOUT_S = 15
# Besides the suite's processes, bwrap and the sandbox's pid 1 count against the limit.
SANDBOX_PROCESSES = 2
LIMITS = f"""
[limits]
memory_mb = {MEMORY_MB}
processes = {PROCESSES}
output_kb = {OUTPUT_KB}
"""

# What the patch's test modules start with; each adds its constants and its tests.
EVIL_IMPORTS = """\
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

"""


class Bot:
    """The real CLI with its config, database and work directory in `home`."""

    def __init__(self, home: Path, upstream: Path):
        self.home = home
        self.config = home / "patchbot.toml"
        self.db = home / "patchbot.db"
        self.work = home / "work"
        # Never in a patch: if one shows up in a log or the store, the sandbox let it be read.
        self.secret = f"pb-secret-{uuid.uuid4().hex}"
        self.smtp_password = f"pb-smtp-password-{uuid.uuid4().hex}"
        self.password_file = home / "smtp-password"
        self.password_file.write_text(self.smtp_password + "\n")
        write_sample_config(self.config, upstream, self.work, self.db)
        text = self.config.read_text()
        smtp = "[smtp]\n"
        assert smtp in text
        text = text.replace(smtp, f'{smtp}username = "patchbot"\npassword_file = "{self.password_file}"\n')
        python_timeout = 'result_path = "test-results/python.xml"\ntimeout = 60\n'
        assert python_timeout in text
        text = text.replace(python_timeout, python_timeout.replace("60", str(SUITE_TIMEOUT_S)))
        # config.py refuses unknown keys: the fake credential lives in a comment.
        self.config.write_text(f"{text}{LIMITS}# smtp_password = \"{self.secret}\"\n")
        self.pids: list[int] = []

    def __call__(self, *args: str):
        result = subprocess.run(self._argv(*args), capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout) if "--json" in args else result.stdout.decode()

    def test(self, series_id: int) -> tuple[dict, int]:
        """`patchbot test --json`: the JSON and the bot's peak resident memory in bytes."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self._argv("test", str(series_id), "--json"), stdout=out, stderr=err)
            self.pids.append(proc.pid)
            watchdog = threading.Timer(300, proc.kill)
            watchdog.start()
            try:
                # wait4, not wait: the rusage of the bot, with its children's that it reaped.
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                watchdog.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0), err.seek(0)
            assert proc.returncode == 0, err.read().decode()
            return json.loads(out.read()), usage.ru_maxrss * 1024

    def submit(self, contributor: Contributor, out: Path) -> tuple[dict, int]:
        self("ingest", str(contributor.format_patch(out)))
        series = self("series", "list", "--json")[-1]
        return self.test(series["id"])

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "patchbot", "-c", str(self.config), *args]


@pytest.fixture
def upstream(sample_repo, tmp_path):
    return Contributor(sample_repo, tmp_path / "upstream")


@pytest.fixture
def bot(upstream):
    home = Path(tempfile.mkdtemp(prefix="patchbot-containment-", dir="/var/tmp"))
    try:
        yield Bot(home, upstream.path)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def marker():
    """Names the attack's processes (as their comm, at most 15 characters, or in their command line)."""
    return f"pb{uuid.uuid4().hex[:12]}"


def attack(bot: Bot, upstream: Contributor, tmp_path: Path, name: str, subject: str, source: str):
    """Submit a patch adding test/python/test_{name}.py; the result JSON and the bot's peak memory."""
    contributor = Contributor(upstream.path, tmp_path / f"contributor-{name}")
    contributor.commit(subject, {f"test/python/test_{name}.py": source})
    result, peak = bot.submit(contributor, tmp_path / f"{name}.mbox")
    assert result["applied"] and result["stacks"] == ["python"], result
    assert [suite["name"] for suite in result["suites"]] == ["python", "parity"], result["suites"]
    python, parity = result["suites"]
    assert parity["status"] == "pass", parity
    assert python["base_status"] in ("pass", None), python  # None: the base is run only for failures
    return result, python, peak


def evil_module(constants: dict, body: str) -> str:
    header = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
    return EVIL_IMPORTS + header + "\n\n" + textwrap.dedent(body)


def carries_on(bot: Bot, upstream: Contributor, tmp_path: Path) -> None:
    """The same bot then tests a harmless series normally."""
    contributor = Contributor(upstream.path, tmp_path / "contributor-harmless")
    name = "test/python/test_router.py"
    text = (contributor.path / name).read_text()
    contributor.commit(f"test: say what the router tests stub ({uuid.uuid4().hex[:8]})",
                       {name: "# The backends are stubs on loopback ports.\n" + text})
    result, _ = bot.submit(contributor, tmp_path / "harmless.mbox")
    assert result["applied"] and result["outcome"] == "pass", result
    assert [(suite["name"], suite["status"]) for suite in result["suites"]] == [("python", "pass"), ("parity", "pass")]
    assert result["suites"][0]["passed"] > 0 and result["suites"][0]["new_failures"] == []


def marked_processes(marker: str) -> list[int]:
    """The machine's processes carrying the marker in their name or command line."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if comm == marker or marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


class ProcessWatch(threading.Thread):
    """Samples the marked processes while the bot runs: their peak number and resident memory."""

    def __init__(self, marker: str):
        super().__init__(daemon=True)
        self.marker = marker
        self.peak_count = 0
        self.peak_rss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self.stop.wait(0.05):
            pids = marked_processes(self.marker)
            self.peak_count = max(self.peak_count, len(pids))
            for pid in pids:
                try:
                    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                except (OSError, IndexError, ValueError):
                    continue
                self.peak_rss = max(self.peak_rss, rss)

    def __enter__(self) -> ProcessWatch:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()


def assert_no_processes_left(bot: Bot, marker: str) -> None:
    assert marked_processes(marker) == [], "processes of the attack outlived the run"
    cgroups = [path for pid in bot.pids for path in _own_pids_cgroup().glob(f"{CGROUP_PREFIX}{pid}-*")]
    assert cgroups == [], "sandbox cgroups left behind"


def read_log(suite: dict) -> str:
    assert suite["log"], suite
    return Path(suite["log"]).read_text(errors="replace")


def test_a_network_connection_is_refused(bot, upstream, tmp_path):
    # The bot's machine listens on loopback: TCP, and an abstract UNIX socket (which belongs
    # to the network namespace, not the file system).
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix_name = f"patchbot-containment-{uuid.uuid4().hex}"
    unix.bind("\0" + unix_name)
    unix.listen()
    heard = []

    def listen(server):
        server.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    heard.append(conn.recv(1024) or b"(connected)")
                except OSError:
                    heard.append(b"(connected)")

    done = threading.Event()
    listeners = [threading.Thread(target=listen, args=(server,), daemon=True) for server in (tcp, unix)]
    for listener in listeners:
        listener.start()
    try:
        source = evil_module({"PORT": tcp.getsockname()[1], "UNIX_NAME": unix_name}, """
            def test_phones_home():
                refused = []
                for family, address in [(socket.AF_INET, ("127.0.0.1", PORT)), (socket.AF_UNIX, "\\0" + UNIX_NAME),
                                        (socket.AF_INET, ("192.0.2.1", 80))]:
                    try:
                        with socket.socket(family) as sock:
                            sock.settimeout(3)
                            sock.connect(address)
                            sock.sendall(b"hello from a patch")
                    except OSError as error:
                        refused.append(f"{address!r}: {error}")
                assert not refused, refused
            """)
        result, python, _ = attack(bot, upstream, tmp_path, "phone_home", "test: phone home", source)
    finally:
        done.set()
        for listener in listeners:
            listener.join()
        tcp.close()
        unix.close()
    assert heard == [], "a test from the patch reached a socket of the host"
    assert python["status"] == "fail" and python["new_failures"] == ["test.python.test_phone_home::test_phones_home"], python
    log = read_log(python)
    assert "Connection refused" in log and "Network is unreachable" in log, log[-3000:]
    carries_on(bot, upstream, tmp_path)


def test_the_bots_config_database_and_smtp_password_cannot_be_read(bot, upstream, tmp_path):
    assert bot.secret in bot.config.read_text() and bot.smtp_password in bot.password_file.read_text()
    files = {"config": str(bot.config), "database": str(bot.db), "password": str(bot.password_file)}
    source = evil_module({"FILES": files}, """
        def read(path):
            try:
                return Path(path).read_bytes()
            except OSError as error:
                return error.strerror


        def test_reads_the_bots_files():
            got = {name: read(path) for name, path in FILES.items()}
            assert all(isinstance(data, bytes) and data for data in got.values()), f"read {got!r}"
            pytest.fail(f"exfiltrated: {got!r}")  # the report is mailed to a public list
        """)
    result, python, _ = attack(bot, upstream, tmp_path, "read_secrets", "test: read the bot's files", source)
    assert python["status"] == "fail" and python["new_failures"] == ["test.python.test_read_secrets::test_reads_the_bots_files"], python
    log = read_log(python)
    # Absent: the sandbox's root is built from an allow-list, which holds none of them.
    for name in files:
        assert re.search(rf"'{name}': 'No such file or directory'", log), log[-3000:]
    stored = json.dumps(bot("series", "show", str(result["series"]), "--json"))
    for secret in (bot.secret, bot.smtp_password):
        assert secret not in log and secret not in stored
        for kept in [bot.db, *bot.db.parent.glob("patchbot.db-*"), *(bot.work / "logs").rglob("*.log")]:
            assert secret.encode() not in kept.read_bytes(), kept
    carries_on(bot, upstream, tmp_path)


def test_writes_outside_the_worktree_are_refused(bot, upstream, tmp_path):
    mark = f"patchbot-containment-{uuid.uuid4().hex}"
    hook_ran = bot.home / f"{mark}-hook-ran"
    # The bot's own folder; the hooks of its mirror, which git runs outside the sandbox (when
    # the next worktree is checked out); the repository it fetches from; a world-writable folder.
    targets = [bot.home / mark, upstream.path / ".git" / "hooks" / "post-checkout", Path("/var/tmp") / mark]
    source = evil_module({"TARGETS": [str(path) for path in targets], "MIRRORS": str(bot.work / "mirrors"),
                          "HOOK": f"#!/bin/sh\ntouch {hook_ran}\n"}, """
        def test_writes_outside():
            targets = [Path(target) for target in TARGETS]
            # None: the sandbox's allow-listed root holds no mirror.
            targets += [hooks / "post-checkout" for hooks in Path(MIRRORS).glob("*/hooks")]
            refused = []
            for target in targets:
                try:
                    target.write_text(HOOK)
                    target.chmod(0o755)
                except OSError as error:
                    refused.append(f"{target}: {error.strerror}")
            assert not refused, refused
        """)
    try:
        result, python, _ = attack(bot, upstream, tmp_path, "write_outside", "test: write outside the worktree", source)
        mirror_hooks = list((bot.work / "mirrors").glob("*/hooks"))
        assert mirror_hooks
        written = [target for target in [*targets, *(hooks / "post-checkout" for hooks in mirror_hooks)] if target.exists()]
        carries_on(bot, upstream, tmp_path)  # checks out a worktree: git would run a planted hook
        assert not hook_ran.exists(), "a hook from the patch ran outside the sandbox"
        assert written == [], "the patch wrote outside the worktree"
    finally:
        (Path("/var/tmp") / mark).unlink(missing_ok=True)
    assert python["status"] == "fail" and python["new_failures"] == ["test.python.test_write_outside::test_writes_outside"], python
    log = read_log(python)
    assert f"{targets[0]}: Read-only file system" in log, log[-3000:]
    assert f"{targets[2]}: Read-only file system" in log, log[-3000:]


def test_a_fork_bomb_is_capped_and_killed_with_every_child(bot, upstream, tmp_path, marker):
    source = evil_module({"MARKER": marker}, """
        def test_forks_without_end():
            Path("/proc/self/comm").write_text(MARKER)  # inherited by every child
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.05)  # as relentless as it is allowed to be, but spare the CPU
        """)
    with ProcessWatch(marker) as watch:
        result, python, _ = attack(bot, upstream, tmp_path, "fork_bomb", "test: fork without end", source)
    assert PROCESSES // 2 < watch.peak_count <= PROCESSES + SANDBOX_PROCESSES, watch.peak_count
    assert_no_processes_left(bot, marker)
    assert python["status"] == "timeout" and result["outcome"] == "timeout", python
    assert python["detail"] == f"killed after {SUITE_TIMEOUT_S} s wall time", python
    assert SUITE_TIMEOUT_S <= python["duration_s"] < SUITE_TIMEOUT_S + 5, python
    carries_on(bot, upstream, tmp_path)


def test_an_endless_test_and_its_daemon_are_killed_at_the_timeout(bot, upstream, tmp_path, marker):
    source = evil_module({"MARKER": marker}, """
        def test_never_ends():
            # A daemon in a session of its own, meant to outlive the run.
            subprocess.Popen(["/bin/sh", "-c", f"while :; do sleep 1; done # {MARKER}"], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            Path("/proc/self/comm").write_text(MARKER)
            while True:
                pass
        """)
    with ProcessWatch(marker) as watch:
        result, python, _ = attack(bot, upstream, tmp_path, "endless", "test: never end", source)
    assert watch.peak_count >= 2, "the test and its daemon did not both run"
    assert_no_processes_left(bot, marker)
    assert python["status"] == "timeout" and result["outcome"] == "timeout", python
    assert python["detail"] == f"killed after {SUITE_TIMEOUT_S} s wall time", python
    assert SUITE_TIMEOUT_S <= python["duration_s"] < SUITE_TIMEOUT_S + 5, python
    carries_on(bot, upstream, tmp_path)


def test_eating_memory_stops_at_the_memory_limit(bot, upstream, tmp_path, marker):
    source = evil_module({"MARKER": marker}, """
        CHUNK = 16 << 20


        def test_eats_memory():
            Path("/proc/self/comm").write_text(MARKER)
            hoard = []
            try:
                while len(hoard) < 4096 // 16:  # 4 GiB, the most this test asks of any machine
                    hoard.append(b"x" * CHUNK)  # touched, so resident
            except MemoryError:
                pass
            got = len(hoard) * 16
            time.sleep(0.5)  # hold it a moment, for whoever watches
            hoard.clear()
            assert got >= 4096, f"hoarded only {got} MiB"


        def test_fills_tmp():
            written = 0
            try:
                with open("/tmp/hoard", "wb") as out:
                    while written < 4096:
                        out.write(b"x" * CHUNK)
                        written += 16
            except OSError as error:
                pytest.fail(f"wrote only {written} MiB to /tmp: {error.strerror}")
        """)
    with ProcessWatch(marker) as watch:
        result, python, _ = attack(bot, upstream, tmp_path, "eat_memory", "test: eat memory", source)
    assert (MEMORY_MB // 2) << 20 < watch.peak_rss <= MEMORY_MB << 20, watch.peak_rss
    assert python["status"] == "fail", python
    assert python["new_failures"] == ["test.python.test_eat_memory::test_eats_memory",
                                      "test.python.test_eat_memory::test_fills_tmp"], python
    log = read_log(python)
    hoarded = int(re.search(r"hoarded only (\d+) MiB", log)[1])
    written = int(re.search(r"wrote only (\d+) MiB", log)[1])
    assert hoarded < MEMORY_MB and written <= MEMORY_MB, log[-3000:]
    assert "No space left on device" in log
    carries_on(bot, upstream, tmp_path)


def test_a_gigabyte_of_output_is_cut_short_and_kept_small(bot, upstream, tmp_path):
    """Contained, and the reply's detail says the suite was killed for its output."""
    source = evil_module({}, """
        def test_prints_a_gigabyte(capfd):
            chunk = (b"y" * 1023 + b"\\n") * 1024
            with capfd.disabled():  # straight to the suite's output, not pytest's capture file
                for _ in range(1024):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            assert False, "printed a gigabyte"
        """)
    started = time.monotonic()
    result, python, peak = attack(bot, upstream, tmp_path, "gigabyte", "test: print a gigabyte", source)
    assert time.monotonic() - started < 60
    log_size = Path(python["log"]).stat().st_size
    assert log_size <= OUTPUT_KB * 1024 + 200, log_size
    # The bot reads at most OUTPUT_KILL_FACTOR times the limit and keeps only the limit in memory.
    # wait4's peak also counts the children it reaped (the sandboxed suites): tens of MiB
    # usually, a few hundred on a loaded machine; holding the gigabyte would be far above.
    assert peak < 400 << 20, f"the bot's peak memory: {peak >> 20} MiB"
    assert python["status"] == "fail", python
    assert re.search(rb"\[patchbot: output truncated: \d+ bytes in all\]\n", Path(python["log"]).read_bytes())
    carries_on(bot, upstream, tmp_path)
    kill_limit = OUTPUT_KB * 1024 * OUTPUT_KILL_FACTOR
    assert f"more than {kill_limit} bytes of output" in python["detail"], python["detail"]
