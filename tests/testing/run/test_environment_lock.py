"""Two workers wanting one environment (issue 12 item 3): with `workers = 2`, two series built the
same venv at once (FileExistsError, then ensurepip failing) and both got an ERROR reply. Now one
builds while the other waits, and both series get results."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import Contributor

from patchbot.demo.sample import write_sample_config

ENVIRONMENT = """
[environments.venv]
command = 'python3 -m venv --without-pip "$PATCHBOT_ENV" && sleep 3 && touch "$PATCHBOT_ENV/complete"'
key_files = ["requirements.txt"]
"""


def test_two_workers_build_one_environment_once_and_both_series_get_results(sample_repo, tmp_path):
    upstream = Contributor(sample_repo, tmp_path / "upstream")
    config = write_sample_config(tmp_path / "patchbot.toml", upstream.path, tmp_path / "work", tmp_path / "patchbot.db")
    text = config.read_text()
    python = 'result_path = "test-results/python.xml"\n'
    assert python in text
    config.write_text(text.replace(python, python + 'environment = "venv"\n') + ENVIRONMENT)

    def bot(*args: str):
        done = subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), *args], capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    series = []
    for name in ("one", "two"):
        contributor = Contributor(upstream.path, tmp_path / f"contributor-{name}")
        contributor.commit(f"test: add test {name}", {f"test/python/test_{name}.py": f"def test_{name}():\n    assert True\n"})
        subprocess.run([sys.executable, "-m", "patchbot", "-c", str(config), "ingest",
                        str(contributor.format_patch(tmp_path / f"{name}.mbox"))], check=True, capture_output=True)
        series.append(bot("series", "list", "--json")[-1]["id"])
    workers = [subprocess.Popen([sys.executable, "-m", "patchbot", "-c", str(config), "test", str(number), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for number in series]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err.decode()[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    for result in results:
        assert [(suite["name"], suite["status"]) for suite in result["suites"]] == [("python", "pass"), ("parity", "pass")]
    assert results[0]["environments"] == results[1]["environments"]
    builds = list((tmp_path / "work" / "environments" / ".builds").iterdir())
    assert len(builds) == 1 and (builds[0] / "complete").exists(), builds
