"""A stand-in for the Kubernetes API server, over real HTTP, for the Kubernetes executor's tests.

No cluster (API server, scheduler, kubelet) runs here. This stub answers the few endpoints the executor calls,
with the JSON shapes of the real API (Job, JobList, PodList, Status, a pod's log), and plays the part of the Job
controller and the kubelet: each created Job gets one pod that is Pending for a moment, then Running (its log
readable and followable), then ends with the exit code its script says (or runs until the Job is deleted). The
real `kubernetes` client library talks to it exactly as to a cluster.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class PodScript:
    """What the one pod of a Job does."""

    log: bytes = b""
    exit_code: int | None = 0  # None: runs until deleted
    pending_s: float = 0.2
    run_s: float = 0.3
    termination_reason: str = "Error"  # the container's reason when exit_code is not 0 (e.g. OOMKilled)
    deletion_s: float = 0.0  # how long a deleted Job stays (foreground deletion: its pod terminates first)


@dataclass
class StubJob:
    manifest: dict[str, Any]
    script: PodScript
    created: float = field(default_factory=time.monotonic)
    deleted_at: float | None = None

    @property
    def deleted(self) -> bool:
        """Gone, its pod with it (until then a deleted Job is still readable, its pod terminating)."""
        return self.deleted_at is not None and time.monotonic() - self.deleted_at >= self.script.deletion_s

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]

    @property
    def pod_name(self) -> str:
        return self.name + "-x7k2p"

    def phase(self) -> str:
        age = time.monotonic() - self.created
        if self.deleted or age < self.script.pending_s:
            return "Pending"
        if self.script.exit_code is None or age < self.script.pending_s + self.script.run_s:
            return "Running"
        return "Succeeded" if self.script.exit_code == 0 else "Failed"

    def job(self) -> dict[str, Any]:
        phase = self.phase()
        if phase == "Succeeded":
            status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        elif phase == "Failed":
            status = {"failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}
        else:
            status = {"active": 1}
        return {**self.manifest, "metadata": {**self.manifest["metadata"], "uid": f"uid-{self.name}"},
                "status": status}

    def pod(self) -> dict[str, Any]:
        phase = self.phase()
        if phase == "Pending":
            state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        elif phase == "Running":
            state = {"running": {}}
        else:
            state = {"terminated": {"exitCode": self.script.exit_code,
                                    "reason": "Completed" if phase == "Succeeded" else self.script.termination_reason}}
        template = self.manifest["spec"]["template"]
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.pod_name, "namespace": self.manifest["metadata"]["namespace"],
                             "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
                "status": {"phase": phase, "containerStatuses": [
                    {"name": "stage", "image": "stub", "imageID": "", "ready": phase == "Running",
                     "restartCount": 0, "state": state}]}}


def _selected(labels: dict[str, str], selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all(labels.get(key) == value for key, value in wanted.items())


class KubernetesStub:
    """`with KubernetesStub(script) as stub:` serves on stub.url until the block ends."""

    def __init__(self, script: Callable[[dict[str, Any]], PodScript]) -> None:
        self.script = script  # manifest -> what its pod does
        self.jobs: dict[tuple[str, str], StubJob] = {}
        self.created: list[dict[str, Any]] = []  # manifests exactly as received
        self.deletes: list[dict[str, Any]] = []  # {"name", "query", "body"} of each DELETE
        self.requests: list[str] = []  # "METHOD path" of each request
        self.authorization: set[str] = set()  # Authorization headers seen
        self.refuse_create: str | None = None  # a message: creating a Job is forbidden (RBAC), with it
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> KubernetesStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def live_jobs(self) -> list[StubJob]:
        with self.lock:
            return [job for job in self.jobs.values() if not job.deleted]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": message, "reason": reason, "code": code})

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                query = {key: values[-1] for key, values in parse_qs(url.query).items()}
                parts = url.path.strip("/").split("/")
                stub.requests.append(f"{method} {url.path}")
                stub.authorization.add(self.headers.get("Authorization", ""))
                body = None
                if int(self.headers.get("Content-Length") or 0):
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                # /apis/batch/v1/namespaces/NS/jobs[/NAME[/status]]
                if parts[:4] == ["apis", "batch", "v1", "namespaces"] and parts[5:6] == ["jobs"]:
                    return self._jobs(method, parts[4], parts[6] if len(parts) > 6 else None, query, body)
                # /api/v1/namespaces/NS/pods[/NAME/log]
                if parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == ["pods"]:
                    return self._pods(method, parts[3], parts[5] if len(parts) > 5 else None, query)
                self._status(404, "NotFound", f"the stub does not serve {method} {url.path}")

            def _jobs(self, method: str, namespace: str, name: str | None, query: dict[str, str],
                      body: Any) -> None:
                if name is None and method == "POST" and stub.refuse_create:
                    return self._status(403, "Forbidden", stub.refuse_create)
                if name is None and method == "POST":
                    manifest = body
                    key = (namespace, manifest["metadata"]["name"])
                    with stub.lock:
                        if key in stub.jobs:
                            return self._status(409, "AlreadyExists", f'jobs.batch "{key[1]}" already exists')
                        stub.created.append(manifest)
                        stub.jobs[key] = job = StubJob(manifest, stub.script(manifest))
                    return self._send(201, job.job())
                if name is None and method == "GET":
                    selector = query.get("labelSelector", "")
                    items = [job.job() for job in stub.live_jobs() if job.manifest["metadata"]["namespace"] ==
                             namespace and _selected(job.manifest["metadata"]["labels"], selector)]
                    return self._send(200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {},
                                            "items": items})
                with stub.lock:
                    job = stub.jobs.get((namespace, name))
                if job is None or job.deleted:
                    return self._status(404, "NotFound", f'jobs.batch "{name}" not found')
                if method == "GET":
                    return self._send(200, job.job())
                if method == "DELETE":
                    stub.deletes.append({"name": name, "query": query, "body": body})
                    job.deleted_at = job.deleted_at or time.monotonic()  # and, as the garbage collector would, its pod
                    return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                            "status": "Success"})
                self._status(405, "MethodNotAllowed", method)

            def _pods(self, method: str, namespace: str, name: str | None, query: dict[str, str]) -> None:
                jobs = [job for job in stub.live_jobs() if job.manifest["metadata"]["namespace"] == namespace]
                if name is None:
                    selector = query.get("labelSelector", "")
                    items = [job.pod() for job in jobs
                             if _selected(job.manifest["spec"]["template"]["metadata"]["labels"], selector)]
                    return self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
                job = next((job for job in jobs if job.pod_name == name), None)
                if job is None:
                    return self._status(404, "NotFound", f'pods "{name}" not found')
                if job.phase() == "Pending":
                    return self._status(400, "BadRequest", f'container "stage" in pod "{name}" is waiting to '
                                                           "start: ContainerCreating")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(job.script.log)
                self.wfile.flush()
                if query.get("follow") == "true":  # the stream ends when the container does
                    while job.phase() == "Running":
                        time.sleep(0.02)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler
