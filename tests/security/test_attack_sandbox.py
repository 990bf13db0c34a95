"""Issue 11, attacks 1, 10 (fork bomb) and 11 (what a suite sees): a suite in the sandbox finds
nothing of the bot to open or connect to, and its fork bomb hurts only its own series.

The bot runs as it does in deploy/: a service user (`nobody` here, or root, as CI runs) whose
state folder holds the database, the config with the SMTP password, a deploy key, the mirrors
(a token in a push URL), other series' worktrees and environments, and logs; Postfix delivers
to a listening LMTP socket at the path of deploy/aurweb.toml; the service's HOME is its state
folder. That layout is built under one folder of /var/tmp rather than at /var/lib/patchbot and
/var/spool/postfix themselves: the sandbox treats every host path alike except the ones it
allow-lists, so the prefix changes nothing it does, while the real paths would collide with an
installed patchbot and with concurrent test runs. Not under /tmp: the sandbox mounts its own
/tmp there, which would hide the layout from any sandbox, even one that bound `/` read-only as
the one this replaced did (this test fails against that one).

The bot's part runs as a separate process (`DRIVER`) under the service user, calling
run_sandboxed as `patchbot serve` does, with the system's Python (the service user cannot reach
the test's interpreter under /root).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import pwd
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from patchbot.testing import sandbox

UNAVAILABLE = sandbox.sandbox_available()
SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no sandbox here: {UNAVAILABLE}"),
    pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"no {SYSTEM_PYTHON} (.ci/setup installs it)"),
]

REPO = Path(sandbox.__file__).resolve().parents[2]
SERVICE_USER = "nobody"
LMTP_SOCKET = Path("var/spool/postfix/patchbot/lmtp.sock")  # deploy/aurweb.toml, below the layout's root

# The bot's side: runs sandboxes as `patchbot serve` does (several at once, in threads) and
# prints what came back. A job with "start_after" starts once that file exists.
DRIVER = textwrap.dedent("""
    import json, os, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from patchbot.testing.sandbox import Limits, ProcessLimit, SandboxSpec, run_sandboxed
    jobs = json.loads(sys.argv[2])
    try:
        probe = ProcessLimit.create(8)
        mechanism = {"cgroup": str(probe.cgroup.parent) if probe.cgroup else None,
                     "namespace": bool(probe.inside_namespace)}
        probe.release()
    except Exception as error:
        mechanism = {"unavailable": str(error)}
    results = [None] * len(jobs)
    def run(index, job):
        if job.get("start_after"):
            give_up_at = time.monotonic() + 30
            while not Path(job["start_after"]).exists() and time.monotonic() < give_up_at:
                time.sleep(0.05)
        result = run_sandboxed(SandboxSpec(
            argv=tuple(job["argv"]), worktree=Path(job["worktree"]), cwd=Path(job["worktree"]),
            env=job["env"], limits=Limits(**job["limits"]),
            readonly_paths=tuple(Path(p) for p in job.get("readonly", ()))))
        results[index] = {"ending": result.ending.value, "exit_code": result.exit_code,
                          "output": result.output.decode(errors="replace"), "detail": result.detail,
                          "duration": result.duration_s}
    threads = [threading.Thread(target=run, args=item) for item in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"mechanism": mechanism, "results": results}))
    """)

# The suite: walks everything it can see, opens every file, connects to every socket file,
# to the abstract socket and the TCP port it was told of, and says what it found.
WALKER = textwrap.dedent("""
    import json, os, socket, stat, sys
    abstract_name, tcp_port = sys.argv[1], int(sys.argv[2])
    seen, opened, sockets, unopenable, links = [], [], {}, {}, {}
    def visit(path):
        seen.append(path)
        try:
            mode = os.lstat(path).st_mode
        except OSError as error:
            unopenable[path] = error.strerror
            return
        if stat.S_ISLNK(mode):
            # Followed: a link committed in the tree, pointing at the bot's files.
            mode = os.stat(path).st_mode if os.path.exists(path) else 0
            links[path] = "leads somewhere" if mode else "leads nowhere"
        if stat.S_ISSOCK(mode):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                try:
                    sock.connect(path)
                    sockets[path] = "connected"
                except OSError as error:
                    sockets[path] = error.strerror
        elif stat.S_ISREG(mode):
            try:
                with open(path, "rb") as file:
                    file.read(1)
                opened.append(path)
            except OSError as error:
                unopenable[path] = error.strerror
    # /proc and /sys are the kernel's: /proc is read for what matters below, not walked.
    for top, dirs, files in os.walk("/"):
        if top == "/":
            dirs[:] = [name for name in dirs if name not in ("proc", "sys")]
        for name in dirs + files:
            visit(os.path.join(top, name))
    def connect(family, address):
        with socket.socket(family) as sock:
            sock.settimeout(2)
            try:
                sock.connect(address)
                return "connected"
            except OSError as error:
                return error.strerror
    import subprocess
    nested = subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode == 0
    print(json.dumps({
        "nested_user_namespace": nested,
        "top": sorted(os.listdir("/")),
        "seen": seen, "opened": opened, "sockets": sockets, "unopenable": unopenable,
        "links": {path: what for path, what in links.items() if path.startswith(os.getcwd())},
        "abstract": connect(socket.AF_UNIX, "\\0" + abstract_name),
        "abstract_listed": abstract_name in open("/proc/net/unix").read(),
        "tcp": connect(socket.AF_INET, ("127.0.0.1", tcp_port)),
        "processes": [name for name in os.listdir("/proc") if name.isdigit()],
        "fds": [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")],
        "home": os.environ.get("HOME"),
    }))
    """)


class DeployLayout:
    """The bot's files as deploy/ lays them out, owned by the service user, below `root`."""

    def __init__(self, root: Path, owner: pwd.struct_passwd):
        self.root, self.owner = root, owner
        self.secret = f"patchbot-secret-{uuid.uuid4().hex}"
        self.state = root / "var/lib/patchbot"
        work = self.state / "work"
        self.worktree = work / "worktrees/7-v2-tip"
        self.environment = work / "environments/venv-4f2a"
        # Everything the suite must not see; each file holds the secret.
        self.bot_files = {
            root / "etc/patchbot/patchbot.toml": f'[smtp]\npassword = "{self.secret}"\n',
            self.state / ".ssh/id_ed25519": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{self.secret}\n",
            self.state / ".gitconfig": f"[credential]\n\thelper = store # {self.secret}\n",
            work / "mirrors/aurweb.git/config":
                f'[remote "origin"]\n\tpushurl = https://oauth2:{self.secret}@gitlab.example/aurweb.git\n',
            work / "worktrees/6-v1-tip/test/conftest.py": f"# another series: {self.secret}\n",
            work / "environments/venv-9c1d/bin/activate": f"# another environment: {self.secret}\n",
            work / "logs/6/python-tip.log": f"another series' log {self.secret}\n",
        }
        self.db = self.state / "patchbot.db"
        self.lmtp_path = root / LMTP_SOCKET
        self.lmtp_path.parent.mkdir(parents=True)
        for path, text in self.bot_files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        with sqlite3.connect(self.db) as db:
            db.execute("create table secrets (value text)")
            db.execute("insert into secrets values (?)", (self.secret,))
        db.close()
        self.worktree.mkdir(parents=True)
        (self.worktree / "walk.py").write_text(WALKER)
        # Symlinks a patch can commit (attack 9), to the bot's things by their deploy paths.
        self.planted_links = {"db": self.db, "config": root / "etc/patchbot/patchbot.toml",
                              "lmtp": self.lmtp_path, "mirror": work / "mirrors/aurweb.git/config"}
        for name, target in self.planted_links.items():
            (self.worktree / name).symlink_to(target)
        self.environment.mkdir(parents=True)
        (self.environment / "marker").write_text("the suite's own environment\n")
        # The service user owns its state; as deploy/ sets it, other users may not enter it
        # (and the files are its own to read, so only the sandbox stands in the way).
        for path in [root / "etc/patchbot", root / "var/spool/postfix", self.state, *self.state.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        for path in [*self.bot_files, self.db]:
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
            path.chmod(0o600)
        self.state.chmod(0o750)
        (root / "etc/patchbot").chmod(0o750)
        self.lmtp_path.parent.chmod(0o750)

    def hidden_everything(self) -> list[Path]:
        """What a suite must find absent: every file and folder of the bot but the way to its
        worktree and environment."""
        on_the_way = {self.root, *self.worktree.parents, *self.environment.parents}
        found = [self.lmtp_path, self.db, *self.bot_files]
        for path in self.root.rglob("*"):
            inside = path.is_relative_to(self.worktree) or path.is_relative_to(self.environment)
            if not inside and path not in on_the_way:
                found.append(path)
        return sorted(set(found))


@pytest.fixture
def layout_root():
    root = Path(tempfile.mkdtemp(prefix="patchbot-deploy-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def service_user(name: str) -> pwd.struct_passwd:
    if name != "root" and os.geteuid() != 0:
        pytest.skip("switching to the service user needs root")
    if name == "root" and os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    return pwd.getpwnam(name)


@functools.cache
def code_the_service_user_reads() -> Path:
    """A copy of patchbot's package that any user may read: the checkout may sit in a folder only
    its owner enters (a clone in `mktemp -d`), from which the service user cannot import. Under
    /tmp, which every sandbox replaces with its own, so no suite sees it."""
    folder = Path(tempfile.mkdtemp(prefix="patchbot-code-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    shutil.copytree(REPO / "patchbot", folder / "patchbot",
                    ignore=shutil.ignore_patterns("__pycache__", "templates", "fixtures"))
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def run_driver(user: pwd.struct_passwd, jobs: list[dict], home: Path, cgroup: Path | None = None,
               wrapper: tuple[str, ...] = ()) -> dict:
    """Run the bot's side as `user`, in `cgroup` (a delegated one) when given, through `wrapper`."""
    procs_file = str(cgroup / "cgroup.procs") if cgroup else None

    def become_the_service() -> None:
        if procs_file:
            with open(procs_file, "w") as file:
                file.write("0")
        if os.geteuid() == 0 and user.pw_uid != 0:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    run = subprocess.run([*wrapper, SYSTEM_PYTHON, "-c", DRIVER, str(code_the_service_user_reads()), json.dumps(jobs)],
                         capture_output=True, text=True, timeout=120, cwd="/",
                         env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"},
                         preexec_fn=become_the_service)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def listening_unix(address) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(address)
    server.listen()
    server.setblocking(False)
    return server


def nothing_connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def public_detail_is_clean(detail: str, *host_paths: Path) -> bool:
    """No host path and no process id in a detail that may be mailed to the list."""
    return (not any(str(path) in detail for path in host_paths)
            and not re.search(r"/(var|sys|srv|home|root|run)/|patchbot-sandbox-\d+|\bpid\b", detail))


@pytest.mark.parametrize("user_name", ["root", SERVICE_USER])
def test_attack_1_and_11_a_suite_finds_nothing_of_the_bot_to_open_or_connect_to(layout_root, user_name):
    user = service_user(user_name)
    layout = DeployLayout(layout_root, user)
    lmtp = listening_unix(str(layout.lmtp_path))
    os.chmod(layout.lmtp_path, 0o666)  # as serve makes it: anyone who can reach it may deliver
    abstract_name = f"patchbot-lmtp-{uuid.uuid4().hex}"
    abstract = listening_unix("\0" + abstract_name)
    tcp = socket.create_server(("127.0.0.1", 0))
    tcp.setblocking(False)
    try:
        # The listeners work: from the host, each one answers.
        for family, address in [(socket.AF_UNIX, str(layout.lmtp_path)), (socket.AF_UNIX, "\0" + abstract_name),
                                (socket.AF_INET, tcp.getsockname())]:
            with socket.socket(family) as probe:
                probe.connect(address)
            server = {socket.AF_INET: tcp}.get(family, lmtp if address == str(layout.lmtp_path) else abstract)
            server.setblocking(True)
            server.accept()[0].close()
            server.setblocking(False)

        job = {"argv": [SYSTEM_PYTHON, "walk.py", abstract_name, str(tcp.getsockname()[1])],
               "worktree": str(layout.worktree), "readonly": [str(layout.environment)],
               # What the service passes on when its HOME is its state folder.
               "env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(layout.state)},
               "limits": {"wall_seconds": 120, "max_processes": 64, "memory_bytes": 1024**3,
                          "max_output_bytes": 64 * 1024**2}}
        ran = run_driver(user, [job], home=layout.state)
        result = ran["results"][0]
        assert (result["ending"], result["exit_code"]) == ("exited", 0), result

        assert nothing_connected(lmtp) and nothing_connected(abstract) and nothing_connected(tcp)
    finally:
        for server in (lmtp, abstract, tcp):
            server.close()
    assert layout.secret not in result["output"]
    report = json.loads(result["output"])
    seen = set(report["seen"])
    # The suite's own things are there (the walk works) ...
    assert str(layout.worktree / "walk.py") in report["opened"]
    assert str(layout.environment / "marker") in report["opened"]
    assert report["home"] == "/tmp"
    # ... and of the bot's, nothing: not the socket, not a file, not a folder.
    visible_of_the_bot = [str(path) for path in layout.hidden_everything() if str(path) in seen]
    assert visible_of_the_bot == []
    assert report["sockets"] == {}, "a socket file is visible in the sandbox"
    assert report["links"] == {str(layout.worktree / name): "leads nowhere" for name in layout.planted_links}
    # Abstract sockets have no file to leave out: only the sandbox's own network namespace
    # keeps this one out of reach.
    assert report["abstract"] == "Connection refused" and report["abstract_listed"] is False
    assert report["tcp"] in ("Network is unreachable", "Connection refused")
    # Beyond the system, only the way to what was bound is there, and /var holds no more.
    system = ("/usr/", "/bin", "/sbin", "/lib", "/etc/", "/dev/", "/tmp/", "/var/tmp")
    on_the_way = {str(path) for path in (*layout.worktree.parents, *layout.environment.parents)}
    strays = [path for path in seen if not (path + "/").startswith(system) and path not in on_the_way
              and not path.startswith((str(layout.worktree), str(layout.environment)))]
    assert strays == []
    assert not {"sys", "run", "srv", "home", "opt", "mnt", "media", "boot"} & set(report["top"])
    assert not [path for path in seen if path.startswith("/etc/") and re.search(r"shadow|ssh|patchbot|postfix", path)]
    # Its own processes only (bwrap's pid 1, the shell turned python), and no descriptor of the bot's.
    assert len(report["processes"]) <= 3, report["processes"]
    assert not [target for target in report["fds"] if target.startswith("socket:")], report["fds"]
    if user.pw_uid != 0:
        # Nor a user namespace of its own inside, where it would hold every capability.
        assert report["nested_user_namespace"] is False


def test_attack_1_a_suite_cannot_reach_the_lmtp_socket_at_its_deploy_path(layout_root):
    """The attack as it was made: connect to the socket Postfix delivers to and speak LMTP."""
    user = service_user("root")
    layout = DeployLayout(layout_root, user)
    lmtp = listening_unix(str(layout.lmtp_path))
    os.chmod(layout.lmtp_path, 0o666)
    (layout.worktree / "deliver.py").write_text(textwrap.dedent(f"""
        import smtplib
        try:
            client = smtplib.LMTP({str(layout.lmtp_path)!r})
            client.sendmail("lena@example.org", ["aur-dev@lists.archlinux.org"],
                            "From: lena@example.org\\r\\n\\r\\npatchbot: apply master\\r\\n")
            print("delivered")
        except OSError as error:
            print("refused:", error)
        """))
    try:
        job = {"argv": [SYSTEM_PYTHON, "deliver.py"], "worktree": str(layout.worktree),
               "env": {"PATH": "/usr/bin:/bin"},
               "limits": {"wall_seconds": 30, "max_processes": 16, "memory_bytes": 512 * 1024**2,
                          "max_output_bytes": 64 * 1024}}
        result = run_driver(user, [job], home=layout.state)["results"][0]
        assert nothing_connected(lmtp)
    finally:
        lmtp.close()
    assert result["output"].strip() == "refused: [Errno 2] No such file or directory", result


def test_attack_11_sandbox_details_name_no_host_path(layout_root):
    """A detail reaches the public reply: a sandbox that cannot start names roles, not paths."""
    user = service_user("root")
    layout = DeployLayout(layout_root, user)
    gone = layout.state / "work/environments/venv-removed"
    job = {"argv": ["true"], "worktree": str(layout.worktree), "readonly": [str(gone)], "env": {},
           "limits": {"wall_seconds": 30, "max_processes": 16, "memory_bytes": 512 * 1024**2,
                      "max_output_bytes": 64 * 1024}}
    missing_tree = {**job, "worktree": str(layout.state / "work/worktrees/removed"), "readonly": []}

    results = run_driver(user, [job, missing_tree], home=layout.state)["results"]

    assert [result["ending"] for result in results] == ["sandbox-error", "sandbox-error"]
    assert results[0]["detail"] == "bwrap: Can't find source path a read-only path: No such file or directory"
    assert results[1]["detail"] == "bwrap: Can't find source path the worktree: No such file or directory"
    assert all(public_detail_is_clean(result["detail"], layout_root) for result in results)


@pytest.fixture
def delegated_cgroup():
    """A pids cgroup handed to the service user, as systemd's Delegate= does for a service
    (cgroup v1 here: the directory and its cgroup.procs and tasks are the user's; its
    pids.max, the bound of the whole service, stays root's)."""
    if os.geteuid() != 0:
        pytest.skip("delegating a cgroup needs root")
    try:
        own = sandbox._own_pids_cgroup()
    except (OSError, sandbox.ProcessLimitUnavailable) as error:
        pytest.skip(f"no pids cgroup here: {error}")
    if not (own / "tasks").exists():
        pytest.skip("cgroup v2 here: the delegated v1 layout does not apply")
    path = own / f"patchbot-test-delegated-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    (path / "pids.max").write_text("2000")
    user = pwd.getpwnam(SERVICE_USER)
    for name in ("", "cgroup.procs", "tasks"):
        os.chown(path / name if name else path, user.pw_uid, user.pw_gid)
    yield path
    for child in path.glob(f"{sandbox.CGROUP_PREFIX}*"):
        child.rmdir()
    path.rmdir()


FORK_BOMB = textwrap.dedent("""
    import os, time
    from pathlib import Path
    while True:
        try:
            os.fork()
        except OSError:
            Path("saturated").touch()  # every process keeps trying: the limit stays full
            time.sleep(0.01)
    """)
# Forty processes at once, well within its own limit of 64, while the bomb fills its own.
INNOCENT = "for i in $(seq 40); do sleep 1 & done; wait; echo innocent-done"


@pytest.mark.parametrize("how", ["root with a pids cgroup", "service user in a delegated cgroup",
                                 "service user without a cgroup"])
def test_attack_10_a_fork_bomb_does_not_stop_a_concurrent_innocent_series(layout_root, how, request):
    user = service_user("root" if how.startswith("root") else SERVICE_USER)
    cgroup = request.getfixturevalue("delegated_cgroup") if "delegated" in how else None
    marker = f"patchbot-bomb-{uuid.uuid4().hex}"
    trees = {}
    for name in ("bomb", "innocent"):
        trees[name] = layout_root / name
        trees[name].mkdir()
        os.chown(trees[name], user.pw_uid, user.pw_gid)
    (trees["bomb"] / "bomb.py").write_text(FORK_BOMB)
    limits = {"max_processes": 64, "memory_bytes": 512 * 1024**2, "max_output_bytes": 64 * 1024}
    jobs = [
        {"argv": [SYSTEM_PYTHON, "bomb.py", marker], "worktree": str(trees["bomb"]), "env": {"PATH": "/usr/bin:/bin"},
         "limits": {**limits, "wall_seconds": 10}},
        {"argv": ["sh", "-c", INNOCENT], "worktree": str(trees["innocent"]), "env": {"PATH": "/usr/bin:/bin"},
         "limits": {**limits, "wall_seconds": 30}, "start_after": str(trees["bomb"] / "saturated")},
    ]

    ran = run_driver(user, jobs, home=layout_root, cgroup=cgroup)

    mechanism = ran["mechanism"]
    if how == "root with a pids cgroup":
        assert mechanism["cgroup"] is not None, mechanism
    elif cgroup is not None:
        assert mechanism["cgroup"] == str(cgroup), mechanism
    else:
        assert mechanism == {"cgroup": None, "namespace": True}, mechanism
    bomb, innocent = ran["results"]
    assert (trees["bomb"] / "saturated").exists(), "the bomb never reached its limit"
    assert bomb["ending"] == "timeout", bomb
    assert (innocent["ending"], innocent["exit_code"]) == ("exited", 0), innocent
    assert innocent["output"].strip() == "innocent-done"
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""
    for result in (bomb, innocent):
        assert public_detail_is_clean(result["detail"], layout_root), result["detail"]


def test_attack_10_without_a_per_suite_process_limit_the_sandbox_refuses_and_says_so_plainly(layout_root):
    """Root, which RLIMIT_NPROC never binds, on a machine without a pids cgroup (here: a mount
    namespace without one): running unlimited would let a fork bomb take every other suite
    down, so the sandbox does not start, with a reason fit for a public reply."""
    user = service_user("root")
    pids_mounts = [line.split(" - ")[0].split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if line.split(" - ")[1].startswith("cgroup ") and "pids" in line.split(" - ")[1].split()[2].split(",")]
    if not pids_mounts or shutil.which("unshare") is None:
        pytest.skip("no cgroup v1 pids hierarchy to take away here")
    without_pids = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                    f'umount -l {pids_mounts[0]} && exec "$@"', "without-pids")
    tree = layout_root / "tree"
    tree.mkdir()
    job = {"argv": ["sh", "-c", "echo ran"], "worktree": str(tree), "env": {},
           "limits": {"wall_seconds": 10, "max_processes": 64, "memory_bytes": 512 * 1024**2,
                      "max_output_bytes": 64 * 1024}}

    ran = run_driver(user, [job], home=layout_root, wrapper=without_pids)

    if "unavailable" not in ran["mechanism"]:
        pytest.skip(f"a pids cgroup is still to be had: {ran['mechanism']}")
    result = ran["results"][0]
    assert (result["ending"], result["output"]) == ("sandbox-error", "")
    assert result["detail"] == "process limit not enforced: no per-suite limit is possible here"
