"""Environments in the real sandbox: inputs read from git objects, keyed by every input, built once
per key under a lock, published whole or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from patchbot.config.records import Config, EnvironmentConfig, LimitsConfig
from patchbot.testing.environments import EnvironmentFailed, Origin, RunEnvironments, build, read_key_files, recipe
from patchbot.testing.sandbox import sandbox_available
from patchbot.testing.reports import Outcome

pytestmark = pytest.mark.skipif(sandbox_available() is not None, reason=f"no sandbox: {sandbox_available()}")

CONFIG = Config(
    path=(str(Path(sys.executable).parent), "/usr/bin", "/bin"),
    expose=(Path(sys.base_prefix).resolve(), Path(sys.prefix)),
    limits=LimitsConfig(memory_mb=512, processes=64, output_kb=256),
)
GIT = ["git", "-c", "user.name=Jane Doe", "-c", "user.email=jane@example.org", "-c", "commit.gpgsign=false"]


class Repo:
    """A git repository to commit key files in; its commits are read like the mirror's."""

    def __init__(self, path: Path):
        self.path = path
        subprocess.run(["git", "init", "-q", "-b", "master", str(path)], check=True)

    def commit(self, files: dict[str, str | None], links: dict[str, str] | None = None) -> str:
        for name, text in files.items():
            target = self.path / name
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        for name, points_to in (links or {}).items():
            (self.path / name).unlink(missing_ok=True)
            (self.path / name).symlink_to(points_to)
        subprocess.run([*GIT, "add", "-A"], cwd=self.path, check=True)
        subprocess.run([*GIT, "commit", "-q", "--allow-empty", "-m", "change"], cwd=self.path, check=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.path, check=True, capture_output=True,
                              text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "repo")


def built(repo: Repo, commit: str, environment: EnvironmentConfig, cache: Path, origin=Origin.BASE) -> Path:
    files = read_key_files(repo.path, commit, environment.key_files)
    return build(recipe(environment, commit, files, origin, CONFIG), CONFIG, cache, (), None)


def test_an_environment_is_built_once_per_key_from_the_commit_s_files(repo, tmp_path):
    environment = EnvironmentConfig("env", 'date +%s%N > "$PATCHBOT_ENV/made"; cat requirements.txt > "$PATCHBOT_ENV/req"',
                                    ("requirements.txt",))
    first_commit = repo.commit({"requirements.txt": "pytest\n", "README": "x\n"})
    first = built(repo, first_commit, environment, tmp_path / "envs")
    made = (first / "made").read_text()
    assert (first / "req").read_text() == "pytest\n"
    # The working tree is not what counts: only the commit's objects are.
    (repo.path / "requirements.txt").write_text("something else\n")
    assert built(repo, first_commit, environment, tmp_path / "envs") == first
    assert (first / "made").read_text() == made  # not built again
    # A commit that changes another file has the same key; one that changes a key file, a new one.
    assert built(repo, repo.commit({"README": "y\n", "requirements.txt": "pytest\n"}), environment, tmp_path / "envs") == first
    second = built(repo, repo.commit({"requirements.txt": "pytest\nhypothesis\n"}), environment, tmp_path / "envs")
    assert second != first and (second / "req").read_text() == "pytest\nhypothesis\n"
    published = sorted(path.name for path in (tmp_path / "envs").iterdir() if not path.name.startswith("."))
    assert len(published) == 2 and all((tmp_path / "envs" / name).is_symlink() for name in published)


def test_the_build_sees_only_its_key_files_and_pinned_files(repo, tmp_path):
    pinned = tmp_path / "aurweb-2020.txt"
    pinned.write_text("sqlalchemy==1.3.19\n")
    environment = EnvironmentConfig("env", 'find . -type f | sort > "$PATCHBOT_ENV/seen"; cat "$PATCHBOT_PINNED/aurweb-2020.txt" >> "$PATCHBOT_ENV/seen"',
                                    ("setup.py", "requirements"), pinned_files=(pinned,))
    commit = repo.commit({"setup.py": "print()\n", "requirements/dev.txt": "pytest\n", "aurweb/app.py": "x = 1\n"})
    folder = built(repo, commit, environment, tmp_path / "envs")
    assert (folder / "seen").read_text().splitlines() == ["./requirements/dev.txt", "./setup.py", "sqlalchemy==1.3.19"]


def test_the_key_covers_the_command_the_pinned_files_and_the_network_rule(repo, tmp_path):
    pinned = tmp_path / "pinned.txt"
    pinned.write_text("a==1\n")
    environment = EnvironmentConfig("env", "true", ("requirements.txt",), network=True, pinned_files=(pinned,))
    commit = repo.commit({"requirements.txt": "pytest\n"})
    files = read_key_files(repo.path, commit, environment.key_files)
    key = recipe(environment, commit, files, Origin.BASE, CONFIG).key
    assert recipe(environment, commit, files, Origin.BASE, CONFIG).key == key
    assert recipe(replace(environment, command="true # v2"), commit, files, Origin.BASE, CONFIG).key != key
    assert recipe(environment, commit, files, Origin.OFFLINE, CONFIG).key != key  # built without network
    assert recipe(environment, commit, files, Origin.TRUSTED, CONFIG).key == key  # the same inputs, networked
    offline_only = replace(environment, network=False)
    assert (recipe(offline_only, commit, files, Origin.OFFLINE, CONFIG).key !=
            recipe(offline_only, commit, files, Origin.BASE, CONFIG).key)  # a patch's build is never the base's
    pinned.write_text("a==2\n")
    assert recipe(environment, commit, files, Origin.BASE, CONFIG).key != key


def test_a_failed_build_publishes_nothing_and_leaves_nothing(repo, tmp_path):
    environment = EnvironmentConfig("env", 'touch "$PATCHBOT_ENV/half"; echo cannot build; exit 3', ())
    with pytest.raises(EnvironmentFailed, match="cannot build"):
        built(repo, repo.commit({}), environment, tmp_path / "envs")
    assert [path.name for path in (tmp_path / "envs").iterdir() if not path.name.startswith(".")] == []
    assert list((tmp_path / "envs" / ".builds").iterdir()) == []


def test_a_build_a_crash_left_half_done_is_never_used_and_is_replaced(repo, tmp_path):
    environment = EnvironmentConfig("env", 'echo whole > "$PATCHBOT_ENV/state"', ())
    commit = repo.commit({})
    cache = tmp_path / "envs"
    wanted = recipe(environment, commit, (), Origin.BASE, CONFIG)
    # What a bot killed mid-build leaves: a build folder, never published.
    half = cache / ".builds" / f"{wanted.folder_name}.crashed"
    half.mkdir(parents=True)
    (half / "state").write_text("half\n")
    folder = build(wanted, CONFIG, cache, (), None)
    assert (folder / "state").read_text() == "whole\n"
    assert not half.exists() and os.readlink(cache / wanted.folder_name) == f".builds/{folder.name}"


def test_two_workers_wanting_one_environment_build_it_once_and_both_use_it(repo, tmp_path):
    """Issue 12 item 3: with workers = 2, two series built one venv at once and both failed."""
    environment = EnvironmentConfig("env", 'python3 -m venv --without-pip "$PATCHBOT_ENV" && sleep 1 &&'
                                           ' date +%s%N > "$PATCHBOT_ENV/made"', ("requirements.txt",))
    commit = repo.commit({"requirements.txt": "pytest\n"})
    results: list[Path | BaseException] = []

    def worker() -> None:
        try:
            results.append(built(repo, commit, environment, tmp_path / "envs"))
        except BaseException as error:  # noqa: BLE001 - the assertion below shows it
            results.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(isinstance(result, Path) for result in results), results
    assert results[0] == results[1]
    assert len(list((tmp_path / "envs" / ".builds").iterdir())) == 1  # one build, not two
    assert (results[0] / "bin" / "python").exists()


def test_two_processes_wanting_one_environment_build_it_once(repo, tmp_path):
    commit = repo.commit({"requirements.txt": "pytest\n"})
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pathlib import Path
from patchbot.config.records import EnvironmentConfig
from test_environments import CONFIG, Origin, build, read_key_files, recipe
environment = EnvironmentConfig("env", 'sleep 1; date +%s%N > "$PATCHBOT_ENV/made"', ("requirements.txt",))
files = read_key_files(Path({str(repo.path)!r}), {commit!r}, environment.key_files)
print(build(recipe(environment, {commit!r}, files, Origin.BASE, CONFIG), CONFIG, Path({str(tmp_path / 'envs')!r}), (), None))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    paths = [worker.communicate(timeout=120)[0].strip() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert paths[0] == paths[1] and len(list((tmp_path / "envs" / ".builds").iterdir())) == 1


def test_a_series_that_leaves_the_key_files_alone_uses_the_base_s_environment(repo, tmp_path):
    environment = EnvironmentConfig("env", 'echo "$PATCHBOT_ORIGIN" > "$PATCHBOT_ENV/origin"', ("requirements.txt",), network=True)
    config = replace(CONFIG, environments={"env": environment})
    base = repo.commit({"requirements.txt": "pytest\n"})
    head = repo.commit({"app.py": "x = 1\n"})
    plan = RunEnvironments.plan(config, repo.path, ["env"], base_commit=base, head=head, base_reviewed=True, trusted=set(),
                                cache_dir=tmp_path / "envs", hidden=(), log_dir=tmp_path / "logs")
    (tip, missing), (at_base, _) = plan.for_tip(), plan.for_base()
    assert missing == {} and tip == at_base and (tip["env"] / "origin").read_text() == "base\n"
    assert [(note.origin, note.changed, note.state) for note in plan.notes()] == [("base", False, "ready")]


def test_changed_key_files_build_offline_and_wait_for_trust_when_that_fails(repo, tmp_path):
    environment = EnvironmentConfig("env", '[ -z "$PIP_NO_INDEX" ] || { echo offline; exit 1; }; touch "$PATCHBOT_ENV/ok"',
                                    ("requirements.txt",), network=True)
    config = replace(CONFIG, environments={"env": environment})
    base = repo.commit({"requirements.txt": "pytest\n"})
    head = repo.commit({"requirements.txt": "pytest\nrequests\n"})
    kwargs = dict(base_commit=base, head=head, base_reviewed=True, cache_dir=tmp_path / "envs", hidden=(), log_dir=tmp_path / "logs")
    plan = RunEnvironments.plan(config, repo.path, ["env"], trusted=set(), **kwargs)
    ready, missing = plan.for_tip()
    assert ready == {} and missing["env"].outcome is Outcome.SKIPPED and "patchbot: trust-deps" in missing["env"].detail
    (note,) = plan.notes()
    assert (note.origin, note.changed, note.state) == ("offline", True, "needs-trust")
    assert "offline" in (tmp_path / "logs" / "environment-env-offline.log").read_text()
    # A maintainer trusts exactly these files: now they build with network.
    trusted = RunEnvironments.plan(config, repo.path, ["env"], trusted={("env", note.files_digest)}, **kwargs)
    ready, missing = trusted.for_tip()
    assert missing == {} and (ready["env"] / "ok").exists()
    assert [n.origin for n in trusted.notes()] == ["trusted"]
    # Trust in other files (an older digest) does not carry over.
    other = RunEnvironments.plan(config, repo.path, ["env"], trusted={("env", "0" * 64)}, **kwargs)
    assert other.for_tip()[0] == {}


def test_a_base_not_on_a_reviewed_branch_builds_offline_too(repo, tmp_path):
    environment = EnvironmentConfig("env", 'echo "$PATCHBOT_ORIGIN ${PIP_NO_INDEX:-net}" > "$PATCHBOT_ENV/how"', (), network=True)
    config = replace(CONFIG, environments={"env": environment})
    commit = repo.commit({})
    plan = RunEnvironments.plan(config, repo.path, ["env"], base_commit=commit, head=commit, base_reviewed=False,
                                trusted=set(), cache_dir=tmp_path / "envs", hidden=(), log_dir=tmp_path / "logs")
    assert (plan.for_base()[0]["env"] / "how").read_text() == "offline 1\n"


def test_key_files_past_the_cap_are_not_read_and_the_series_is_told(repo, tmp_path, monkeypatch):
    import patchbot.testing.environments

    monkeypatch.setattr(patchbot.testing.environments, "MAX_KEY_BYTES", 100)
    environment = EnvironmentConfig("env", 'touch "$PATCHBOT_ENV/ok"', ("requirements.txt",))
    config = replace(CONFIG, environments={"env": environment})
    base = repo.commit({"requirements.txt": "pytest\n"})
    head = repo.commit({"requirements.txt": "x" * 200})
    plan = RunEnvironments.plan(config, repo.path, ["env"], base_commit=base, head=head, base_reviewed=True, trusted=set(),
                                cache_dir=tmp_path / "envs", hidden=(), log_dir=tmp_path / "logs")
    ready, missing = plan.for_tip()
    assert ready == {} and missing["env"].outcome is Outcome.FAIL and "more than" in missing["env"].detail
    assert "env" in plan.for_base()[0]


def test_reviewed_builds_fill_the_wheel_cache_and_a_patch_s_build_only_reads_it(repo, tmp_path):
    environment = EnvironmentConfig("env", """
        if [ -n "$PATCHBOT_OFFLINE" ]; then
            ls "$PIP_FIND_LINKS" > "$PATCHBOT_ENV/seen"; touch "$PATCHBOT_WHEELS/evil-1.0-py3-none-any.whl" 2>/dev/null; true
        else
            echo wheel > "$PATCHBOT_WHEELS/sqlalchemy-1.3.19-py3-none-any.whl"
        fi""", ("requirements.txt",), network=True)
    config = replace(CONFIG, environments={"env": environment})
    base = repo.commit({"requirements.txt": "sqlalchemy\n"})
    head = repo.commit({"requirements.txt": "sqlalchemy==1.3.19\n"})
    plan = RunEnvironments.plan(config, repo.path, ["env"], base_commit=base, head=head, base_reviewed=True, trusted=set(),
                                cache_dir=tmp_path / "envs", hidden=(), log_dir=tmp_path / "logs")
    plan.for_base()
    ready, _ = plan.for_tip()
    assert (ready["env"] / "seen").read_text() == "sqlalchemy-1.3.19-py3-none-any.whl\n"
    assert sorted(path.name for path in (tmp_path / "envs" / ".wheels" / "env").iterdir()) == [
        "sqlalchemy-1.3.19-py3-none-any.whl"]


def test_a_pinned_file_gone_is_the_machine_s_failure_named_in_the_result(repo, tmp_path):
    environment = EnvironmentConfig("env", "true", (), pinned_files=(tmp_path / "gone.txt",))
    config = replace(CONFIG, environments={"env": environment})
    commit = repo.commit({})
    plan = RunEnvironments.plan(config, repo.path, ["env"], base_commit=commit, head=commit, base_reviewed=True,
                                trusted=set(), cache_dir=tmp_path / "envs", hidden=(), log_dir=tmp_path / "logs")
    ready, missing = plan.for_tip()
    assert ready == {} and missing["env"].outcome is Outcome.INFRA_ERROR and "gone.txt cannot be read" in missing["env"].detail
