"""A small client of the control plane's admin API (used by `lomar jobs`, `lomar deploy`, `lomar rollback`).

    client = AdminClient("http://127.0.0.1:8100", token=os.environ["LOMAR_ADMIN_TOKEN"])
    job = client.submit({"data_dir": "new_images", "init": "base.pth", "epochs": 5})
    for text in client.follow(job["id"]): print(text, end="")      # its log; client.watch(id): its record
    client.deploy("lomar_classifier", 3)
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from lomar_serve.common.settings import DEFAULT_CONTROL_PORT

FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_CONTROL_PORT}"


class AdminError(Exception):
    """The control plane refused a request (the message is its JSON error) or could not be reached."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # the JSON error's code ("switch_in_progress"...); "" when it could not be reached


class AdminClient:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout_s: float = 600.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise AdminError(f"cannot reach the control plane at {self._http.base_url}: {error}") from error
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"code": "http_error", "message": response.text[:500]}}
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise AdminError(f"{response.status_code} {error.get('code', '')}: {error.get('message', body)}",
                             response.status_code, str(error.get("code", "")))
        return body

    def create_key(self, request: dict[str, Any]) -> dict[str, Any]:
        """A new API key for the gateways; its `key` is in this answer only."""
        return self._call("POST", "/v1/admin/keys", json=request)

    def keys(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/admin/keys")["keys"]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/admin/keys/{key_id}")

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/admin/jobs", json=request)

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/admin/jobs", params={"limit": limit})["jobs"]

    def job(self, job_id: str, tail: int = 4000) -> dict[str, Any]:
        """The job's record and the last `tail` bytes of its log."""
        return self._call("GET", f"/v1/admin/jobs/{job_id}", params={"tail": tail})

    def metrics(self, job_id: str, after: int = 0) -> dict[str, Any]:
        """The training records the job logged after the cursor `after` (the `next` of the previous call)."""
        return self._call("GET", f"/v1/admin/jobs/{job_id}/metrics", params={"after": after})

    def report(self, job_id: str) -> dict[str, Any]:
        """The evaluation report of the job's version."""
        return self._call("GET", f"/v1/admin/jobs/{job_id}/report")

    def compare(self, job_id: str) -> dict[str, Any]:
        """The job's version beside the serving version on the same evaluation images."""
        return self._call("GET", f"/v1/admin/jobs/{job_id}/compare")

    def watch(self, job_id: str, poll_s: float = 1.0) -> Iterator[dict[str, Any]]:
        """The job's record (without its log) every `poll_s` seconds, until it ends; the last one is final."""
        while True:
            job = self.job(job_id, tail=0)
            yield job
            if job["state"] in FINAL_STATES:
                return
            time.sleep(poll_s)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/admin/jobs/{job_id}/cancel")

    def resume(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/admin/jobs/{job_id}/resume")

    def follow(self, job_id: str, poll_s: float = 1.0) -> Iterator[str]:
        """The job's log as it grows, until the job ends (queued and running jobs are waited for)."""
        offset = 0
        while True:
            chunk = self._call("GET", f"/v1/admin/jobs/{job_id}/log", params={"offset": offset})
            offset = chunk["offset"]
            if chunk["text"]:
                yield chunk["text"]
            elif chunk["state"] in FINAL_STATES:
                return
            else:
                time.sleep(poll_s)

    def model(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/admin/models/{name}")

    def deploy(self, name: str, version: int) -> dict[str, Any]:
        return self._call("POST", f"/v1/admin/models/{name}/deploy", json={"version": version})

    def rollback(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/admin/models/{name}/rollback")
