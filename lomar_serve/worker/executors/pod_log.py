"""Copies a Job's pod log into the job log while the pod runs (a thread following the log stream)."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from lomar_serve.worker.executors.base import log_line

LOGGER = logging.getLogger(__name__)
CHUNK_BYTES = 64 * 1024
ENDED_PHASES = ("Succeeded", "Failed")


def pending_reason(pod: Any) -> str:
    """Why a pending pod waits ("Unschedulable: 0/3 nodes ...", "ImagePullBackOff: ..."), or ""."""
    status = pod.status
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"{condition.reason}: {condition.message}"
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason:
            return f"{waiting.reason}: {waiting.message}" if waiting.message else waiting.reason
    return ""


class PodLogCopier(threading.Thread):
    """Appends the log of the pod that `selector` selects to `log_path`, as it is written.

    A broken stream is opened again and the bytes already copied are skipped, so nothing is copied twice. While
    the pod is pending, its reason (scheduling, image pull) is noted in the log each time it changes.
    """

    def __init__(self, core: client.CoreV1Api, namespace: str, selector: str, log_path: Path,
                 poll_interval_s: float) -> None:
        super().__init__(name=f"pod-log {selector}", daemon=True)
        self.core = core
        self.namespace = namespace
        self.selector = selector
        self.log_path = log_path
        self.poll_interval_s = poll_interval_s
        self.copied = 0  # bytes of the pod log appended so far
        self._job_ended = threading.Event()
        self._abandon = threading.Event()
        self._response: Any = None
        self._pending = ""

    def finish(self, timeout_s: float) -> None:
        """The Job has ended: copy what is left (at most `timeout_s`), then stop."""
        self._job_ended.set()
        self.join(timeout_s)
        if self.is_alive():
            LOGGER.warning("the log of %s was still streaming %.0f s after its Job ended; left", self.selector,
                           timeout_s)
            self._abandon.set()
            response = self._response
            if response is not None:
                response.shutdown()  # unblocks the read in the thread

    def run(self) -> None:
        while not self._abandon.is_set():
            ended = self._job_ended.is_set()  # read first: a pod seen after the Job ended is its last state
            pod = self._pod()
            phase = pod.status.phase if pod is not None and pod.status is not None else None
            if phase in ("Running", *ENDED_PHASES):
                if self._follow(pod.metadata.name) and phase in ENDED_PHASES:
                    return
            elif pod is not None:
                self._note_pending(pod)
            if ended:
                return
            self._job_ended.wait(self.poll_interval_s)

    def _pod(self) -> Any:
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        except (ApiException, HTTPError) as error:
            LOGGER.warning("listing the pods of %s failed: %s", self.selector, error)
            return None
        return pods[0] if pods else None  # backoffLimit 0, restartPolicy Never: one pod per Job

    def _follow(self, pod_name: str) -> bool:
        """Stream the pod's log to its end; False if it could not be opened or broke off."""
        try:
            response = self.core.read_namespaced_pod_log(pod_name, self.namespace, follow=True,
                                                         _preload_content=False)
        except (ApiException, HTTPError):  # not started yet, or gone
            return False
        self._response = response
        skip = self.copied
        try:
            with open(self.log_path, "ab") as log:
                while chunk := response.read1(CHUNK_BYTES):  # what has arrived (stream() waits for a full chunk)
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    if chunk:
                        log.write(chunk)
                        log.flush()
                        self.copied += len(chunk)
            return True
        except (HTTPError, OSError) as error:
            LOGGER.warning("the log stream of pod %s broke off (%s); opening it again", pod_name, error)
            return False
        finally:
            self._response = None
            response.release_conn()

    def _note_pending(self, pod: Any) -> None:
        reason = pending_reason(pod)
        if reason and reason != self._pending:
            self._pending = reason
            log_line(self.log_path, f"pod {pod.metadata.name} is pending: {reason}")
