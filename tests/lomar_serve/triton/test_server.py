"""The Triton launcher against the real binary bundled with nvidia-pytriton, on a one-model repository."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lomar_serve.triton import TritonError, TritonServer, TritonServerConfig, TritonStartError

REPO = Path(__file__).resolve().parents[3]

DOUBLER_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""

DOUBLER_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        {initialize}

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", (2 * x).astype(np.float32))]))
        return responses
"""


def write_model(repo: Path, name: str, initialize: str = "pass") -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(DOUBLER_CONFIG.format(name=name))
    (repo / name / "1" / "model.py").write_text(DOUBLER_MODEL.format(initialize=initialize))


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not running(pid) and not group_members(pid):
            return True
        time.sleep(0.2)
    return False


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_control_mode"):
        TritonServerConfig(model_repository=tmp_path, model_control_mode="sometimes")
    with pytest.raises(ValueError, match="load_models"):
        TritonServerConfig(model_repository=tmp_path, model_control_mode="none", load_models=("a",))
    with pytest.raises(ValueError, match="http_port"):
        TritonServerConfig(model_repository=tmp_path, http_port=70000)


def test_args_bind_loopback_and_load_models(tmp_path: Path) -> None:
    args = TritonServerConfig(model_repository=tmp_path).to_args(tmp_path, (1, 2, 3))
    assert "--http-address=127.0.0.1" in args and "--grpc-address=127.0.0.1" in args
    assert "--metrics-address=127.0.0.1" in args and "--load-model=*" in args
    named = TritonServerConfig(model_repository=tmp_path, load_models=("a", "b")).to_args(tmp_path, (1, 2, 3))
    assert "--load-model=a" in named and "--load-model=b" in named and "--load-model=*" not in named


def test_urls_need_a_started_server(tmp_path: Path) -> None:
    server = TritonServer(TritonServerConfig(model_repository=tmp_path))
    with pytest.raises(TritonError):
        _ = server.http_url
    server.stop()  # stopping a server that never started is a no-op


@pytest.mark.e2e
def test_start_infer_stop_leaves_no_process(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    write_model(tmp_path / "repo", "doubler")
    server = TritonServer(TritonServerConfig(model_repository=tmp_path / "repo"), log_path=tmp_path / "triton.log")
    with server:
        pid = server.pid
        assert pid is not None and server.is_alive()
        x = np.array([[1.0, -2.0], [0.5, 3.0]], dtype=np.float32)
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("doubler")
        inputs = [httpclient.InferInput("x", list(x.shape), "FP32")]
        inputs[0].set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("doubler", inputs).as_numpy("y"), 2 * x)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert grpc.is_server_ready()
        grpc.close()
        with urllib.request.urlopen(server.metrics_url, timeout=5) as page:
            assert b"nv_inference_request_success" in page.read()
        client.close()
    assert not server.is_alive() and server.pid is None
    assert wait_gone(pid, timeout_s=5.0), f"processes left in group {pid}: {group_members(pid)}"
    server.stop()  # idempotent
    assert "Started HTTPService at 127.0.0.1" in (tmp_path / "triton.log").read_text()


@pytest.mark.e2e
def test_failed_model_load_raises_with_log_tail(tmp_path: Path) -> None:
    write_model(tmp_path / "repo", "broken", initialize="raise RuntimeError('deliberately broken model')")
    server = TritonServer(TritonServerConfig(model_repository=tmp_path / "repo"), log_path=tmp_path / "triton.log")
    with pytest.raises(TritonStartError, match="deliberately broken model"):
        server.start(timeout_s=60)
    assert not server.is_alive()


@pytest.mark.e2e
def test_server_dies_with_its_parent(tmp_path: Path) -> None:
    write_model(tmp_path / "repo", "doubler")
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from lomar_serve.triton import TritonServer, TritonServerConfig
        server = TritonServer(TritonServerConfig(model_repository=Path({str(tmp_path / "repo")!r})),
                              log_path=Path({str(tmp_path / "triton.log")!r}))
        server.start(timeout_s=60)
        print(server.pid, flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    triton_pid = None
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.strip().isdigit(), f"parent did not report a pid (exit {parent.poll()})"
        triton_pid = int(line)
        assert running(triton_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_gone(triton_pid, timeout_s=30.0), f"left behind: {group_members(triton_pid)}"
    finally:
        parent.kill()
        parent.wait()
        if triton_pid is not None and group_members(triton_pid):
            os.killpg(triton_pid, signal.SIGKILL)


@pytest.mark.e2e
def test_stop_from_another_thread_aborts_a_start(tmp_path: Path) -> None:
    import threading

    write_model(tmp_path / "repo", "slow", initialize="import time; time.sleep(30)")
    server = TritonServer(TritonServerConfig(model_repository=tmp_path / "repo"), log_path=tmp_path / "triton.log")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            server.start(timeout_s=60)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    thread = threading.Thread(target=start)
    thread.start()
    deadline = time.monotonic() + 30
    while server.pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = server.pid
    assert pid is not None
    server.stop(timeout_s=5)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], TritonStartError)
    assert wait_gone(pid, timeout_s=5.0), f"left behind: {group_members(pid)}"


def test_backend_directory_is_assembled_once_with_the_stub(tmp_path: Path) -> None:
    from lomar_serve.triton.distribution import STUB_NAME, find_distribution, prepare_backend_directory

    dist = find_distribution()
    first = prepare_backend_directory(dist, tmp_path)
    assert (first / "python" / STUB_NAME).is_file() and (first / "python" / "libtriton_python.so").is_file()
    assert prepare_backend_directory(dist, tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging folder left behind
