"""A stand-in for the GitLab REST API, because a GitLab server cannot run on these machines.

It is an HTTP server on 127.0.0.1 that answers the endpoints python-gitlab calls for the
`gitlab` executor, in GitLab's JSON shapes, and a local bare repository as the push remote.
A post-receive hook records each push with its push options; a pipeline appears for a pushed
ref and commit (not for a push with `ci.skip`), and its status moves one step each time it is
read, through a script the test chooses. Faults on demand: the next N requests answer 503.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

HOOK = """#!/bin/sh
# Record every pushed ref with the push options that came with it (one per tab).
options=""
i=0
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
    eval "options=\\"$options\\t\\$GIT_PUSH_OPTION_$i\\""
    i=$((i + 1))
done
while read old new ref; do
    printf '%s %s%b\\n' "$ref" "$new" "$options" >> "$GIT_DIR/pushes.log"
done
"""


@dataclass
class Scenario:
    """What the pipelines of one kind of branch (tip or base) do."""

    statuses: list[str] = field(default_factory=lambda: ["created", "pending", "running", "success"])
    jobs: dict[str, str] = field(default_factory=dict)  # job name -> final status
    test_suites: list[dict] = field(default_factory=list)  # GitLab's test_report "test_suites"
    traces: dict[str, str] = field(default_factory=dict)  # job name -> log


def junit_suite(name: str, passed: list[str], failed: dict[str, str] | None = None) -> dict:
    """One test suite of GitLab's test report, as GitLab builds it from a JUnit file."""
    cases = [{"status": "success", "name": test, "classname": f"test.{name}", "execution_time": 0.01,
              "system_output": None, "stack_trace": None} for test in passed]
    cases += [{"status": "failed", "name": test, "classname": f"test.{name}", "execution_time": 0.01,
               "system_output": message, "stack_trace": None} for test, message in (failed or {}).items()]
    return {"name": name, "total_time": 0.1, "total_count": len(cases), "success_count": len(passed),
            "failed_count": len(failed or {}), "skipped_count": 0, "error_count": 0, "test_cases": cases}


class GitlabStandin:
    """The server; `url`, `token`, `remote` (the bare repository) for the config."""

    def __init__(self, folder: Path, token: str = "glpat-standin-5e1f9a"):
        self.token = token
        self.remote = folder / "gitlab-remote.git"
        subprocess.run(["git", "init", "-q", "--bare", str(self.remote)], check=True)
        subprocess.run(["git", "config", "receive.advertisePushOptions", "true"], cwd=self.remote, check=True)
        hook = self.remote / "hooks" / "post-receive"
        hook.write_text(HOOK)
        hook.chmod(0o755)
        self.scenarios = {"tip": Scenario(), "base": Scenario()}
        self.faults = 0  # the next N requests answer 503
        self.requests: list[tuple[str, str, dict]] = []
        self.pipelines: dict[int, dict] = {}
        self.merge_requests: dict[int, dict] = {}
        self.statuses: list[dict] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                standin._answer(self, "GET")

            def do_POST(self) -> None:
                standin._answer(self, "POST")

            def do_PUT(self) -> None:
                standin._answer(self, "PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what the test reads --------------------------------------------------------------------

    def pushes(self) -> list[tuple[str, str, list[str]]]:
        """(ref, commit, push options) of every push the remote received."""
        log = self.remote / "pushes.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [(parts[0].split(" ")[0], parts[0].split(" ")[1], parts[1:]) for parts in (line.split("\t") for line in lines)]

    def branches(self) -> list[str]:
        return subprocess.run(["git", "for-each-ref", "--format=%(refname:short)", "refs/heads"], cwd=self.remote,
                              capture_output=True, text=True, check=True).stdout.split()

    # -- the API ------------------------------------------------------------------------------

    def _answer(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length) or b"{}") if length else {}
        with self._lock:
            self.requests.append((method, url.path, dict(request.headers)))
            if self.faults > 0:
                self.faults -= 1
                return _send(request, 503, {"message": "503 Service Unavailable"})
            if request.headers.get("PRIVATE-TOKEN") != self.token:
                return _send(request, 401, {"message": "401 Unauthorized"})
            status, answer = self._route(method, url.path, parse_qs(url.query), body)
        if isinstance(answer, str):
            return _send(request, status, answer.encode(), "text/plain")
        _send(request, status, answer)

    def _route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, object]:
        # The project is one path segment: an id, or its path with the slash encoded (%2F).
        match = re.fullmatch(r"/api/v4/projects/([^/]+)(/.*)?", path)
        if not match or unquote(match.group(1)) not in ("1", "archlinux/aurweb"):
            return 404, {"message": "404 Project Not Found"}
        rest = unquote(match.group(2) or "")
        one = lambda name: query.get(name, [None])[0]  # noqa: E731
        if rest == "/pipelines" and method == "GET":
            self._start_pipelines()
            found = [p for p in self.pipelines.values() if p["ref"] == one("ref") and (not one("sha") or p["sha"] == one("sha"))]
            return 200, [self._pipeline_json(p) for p in sorted(found, key=lambda p: -p["id"])]
        if m := re.fullmatch(r"/pipelines/(\d+)", rest):
            pipeline = self.pipelines[int(m.group(1))]
            if pipeline["status"] not in ("success", "failed", "canceled", "skipped"):
                pipeline["step"] = min(pipeline["step"] + 1, len(pipeline["scenario"].statuses) - 1)
                pipeline["status"] = pipeline["scenario"].statuses[pipeline["step"]]
            return 200, self._pipeline_json(pipeline)
        if m := re.fullmatch(r"/pipelines/(\d+)/cancel", rest):
            pipeline = self.pipelines[int(m.group(1))]
            pipeline["status"] = "canceled"
            pipeline["canceled_by_api"] = True
            return 201, self._pipeline_json(pipeline)
        if m := re.fullmatch(r"/pipelines/(\d+)/test_report", rest):
            suites = self.pipelines[int(m.group(1))]["scenario"].test_suites
            return 200, {"total_count": sum(s["total_count"] for s in suites), "test_suites": suites}
        if m := re.fullmatch(r"/pipelines/(\d+)/jobs", rest):
            pipeline = self.pipelines[int(m.group(1))]
            return 200, [{"id": pipeline["id"] * 100 + index, "name": name, "status": status, "stage": "test"}
                         for index, (name, status) in enumerate(pipeline["scenario"].jobs.items())]
        if m := re.fullmatch(r"/jobs/(\d+)/trace", rest):
            pipeline = self.pipelines[int(m.group(1)) // 100]
            name = list(pipeline["scenario"].jobs)[int(m.group(1)) % 100]
            return 200, pipeline["scenario"].traces.get(name, f"job {name}: {pipeline['scenario'].jobs[name]}\n")
        if rest == "/merge_requests" and method == "POST":
            if any(mr["source_branch"] == body["source_branch"] and mr["state"] == "opened"
                   for mr in self.merge_requests.values()):
                return 409, {"message": ["Another open merge request already exists for this source branch"]}
            iid = len(self.merge_requests) + 1
            self.merge_requests[iid] = {"id": 1000 + iid, "iid": iid, "state": "opened", **body}
            return 201, self.merge_requests[iid]
        if rest == "/merge_requests" and method == "GET":
            return 200, [mr for mr in self.merge_requests.values()
                         if mr["source_branch"] == one("source_branch") and mr["state"] == (one("state") or mr["state"])]
        if (m := re.fullmatch(r"/merge_requests/(\d+)", rest)) and method == "PUT":
            self.merge_requests[int(m.group(1))].update(body)
            return 200, self.merge_requests[int(m.group(1))]
        if (m := re.fullmatch(r"/statuses/([0-9a-f]+)", rest)) and method == "POST":
            if any(s["sha"] == m.group(1) and s["state"] == body["state"] for s in self.statuses):
                return 400, {"message": "Cannot transition status via :run from :running"}
            self.statuses.append({"sha": m.group(1), **body})
            return 201, {"id": len(self.statuses), "sha": m.group(1), **body}
        return 404, {"message": f"404 {method} {rest} is not served by the stand-in"}

    def _start_pipelines(self) -> None:
        """A pipeline for every pushed commit of a branch, unless the push said ci.skip."""
        for ref, sha, options in self.pushes():
            branch = ref.removeprefix("refs/heads/")
            if "ci.skip" in options or set(sha) == {"0"}:
                continue
            if any(p["ref"] == branch and p["sha"] == sha for p in self.pipelines.values()):
                continue
            scenario = self.scenarios["base" if branch.endswith("-base") else "tip"]
            number = len(self.pipelines) + 1
            self.pipelines[number] = {"id": number, "ref": branch, "sha": sha, "step": 0, "status": scenario.statuses[0],
                                      "scenario": scenario, "options": options}

    def _pipeline_json(self, pipeline: dict) -> dict:
        return {"id": pipeline["id"], "iid": pipeline["id"], "project_id": 1, "ref": pipeline["ref"], "sha": pipeline["sha"],
                "status": pipeline["status"], "web_url": f"{self.url}/aurweb/-/pipelines/{pipeline['id']}"}


def _send(request: BaseHTTPRequestHandler, status: int, body, content_type: str = "application/json") -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
