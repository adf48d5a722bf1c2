"""Ray's own autoscaler, locally, doing what KubeRay's in-tree autoscaler does for an autoscaled group: a
head with no workers (replicas 0, as the example's worker group starts), a submitted job whose resource
demand (GPUs per worker x workers) brings up that many worker nodes, the job completing on them, and after
the idle timeout the workers removed again, back to zero.

The nodes come from Ray's fake multi-node provider (the provider behind ray.cluster_utils.AutoscalingCluster),
named as an external provider because the wheel lacks that provider's defaults file; AutoscalingCluster
itself is not used since its start and shutdown run `ray stop --force`, which would stop every Ray on the
machine. The head runs in its own process group, temp dir and ports, and is ended through that group.

Measured (printed, and in the helper's note): seconds from submission to the job's first step (scale-up),
and from the job's end to zero workers (idle timeout + removal). On HyperPod the first figure adds the
node's provisioning (AWS documents nothing faster than several minutes for a new instance); the second adds
Karpenter's consolidateAfter (k8s_charts/karpenter.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

RAY = Path(sys.executable).with_name("ray")
FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"
PORTS = {  # none is a default Ray port, nor one of the other local-Ray tests'
    "--port": 6397,
    "--dashboard-port": 8297,
    "--ray-client-server-port": 10097,
    "--node-manager-port": 17511,
    "--object-manager-port": 17522,
    "--dashboard-agent-listen-port": 17533,
    "--dashboard-agent-grpc-port": 17544,
    "--runtime-env-agent-port": 17555,
    "--metrics-export-port": 17566,
    "--min-worker-port": 17600,
    "--max-worker-port": 17640,
}
DASHBOARD = f"http://127.0.0.1:{PORTS['--dashboard-port']}"
WORKERS = 2  # the job's demand: 2 workers x 1 GPU, one worker node each
IDLE_TIMEOUT_SECONDS = 10  # ray.autoscaling.idle_timeout_seconds, shortened for the test
JOB = """
import json, sys, time
import ray
from ray.util.placement_group import placement_group

ray.init()
# One bundle per worker on its own node, as a Ray Train run of 2 GPU workers asks for them.
group = placement_group([{"CPU": 1, "GPU": 1}] * %(workers)d, strategy="STRICT_SPREAD")
ray.get(group.ready(), timeout=300)

@ray.remote(num_cpus=1, num_gpus=1)
def step(i):
    return ray.get_runtime_context().get_node_id()

nodes = ray.get([step.options(placement_group=group).remote(i) for i in range(%(workers)d)])
first_step = time.time()
ray.util.remove_placement_group(group)
print(json.dumps({"first_step": first_step, "nodes": sorted(set(nodes)), "end": time.time()}), flush=True)
"""


def _autoscaling_config(gcs_address: str) -> dict:
    return {
        "cluster_name": "h21-fake",
        "max_workers": WORKERS,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_SECONDS / 60,
        "provider": {
            "type": "external",
            "module": FAKE_PROVIDER,
            "gcs_address": gcs_address,
            # As Ray's KubeRay autoscaler config sets them: the pod (here, the fake node) starts Ray itself;
            # no SSH updaters, no launch-config drift checks, nodes launched in the foreground.
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "foreground_node_launch": True,
            # Every fake node shares this machine's IP: the autoscaler tells them apart by node id.
            "use_node_id_as_ip": True,
        },
        "auth": {"ssh_user": "nobody"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu-workers": {
                "resources": {"CPU": 1, "GPU": 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": WORKERS,
            },
        },
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


HEAD_ATTEMPTS = 3  # `ray start` gives its raylet a fixed 30 s to register: a loaded machine can miss it


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "HOME": str(tmp_path_factory.mktemp("home")),
        "RAY_USAGE_STATS_ENABLED": "0",
        # The raylet waits this long for its dashboard agent's port file: on a loaded 2-core machine the
        # default (30 s) is not always enough for the head and each fake worker node.
        "RAY_agent_register_timeout_ms": "180000",
    }
    for attempt in range(1, HEAD_ATTEMPTS + 1):
        temp_dir = Path("/tmp/h21-ray") / uuid.uuid4().hex[:8]  # Ray's socket paths must stay short
        process, log = _start_head(temp_dir, env)
        try:
            _wait(lambda: _alive_workers() == 0 and _head_alive(), process, temp_dir, "the head")
        except pytest.fail.Exception:
            _end_group(process)
            log.close()
            if attempt == HEAD_ATTEMPTS:
                raise
            continue
        try:
            yield temp_dir
        finally:
            _end_group(process)
            log.close()
        return


def _start_head(temp_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, TextIO]:
    temp_dir.mkdir(parents=True)
    config = temp_dir / "autoscaling.json"
    config.write_text(json.dumps(_autoscaling_config(f"127.0.0.1:{PORTS['--port']}")))
    args = [str(RAY), "start", "--head", "--block", "--num-cpus", "0", "--node-ip-address", "127.0.0.1"]
    args += ["--dashboard-host", "127.0.0.1", "--temp-dir", str(temp_dir), "--disable-usage-stats"]
    args += [f"--autoscaling-config={config}", *(f"{flag}={port}" for flag, port in PORTS.items())]
    log = (temp_dir / "ray-start.log").open("w")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def _get(path: str) -> dict:
    with urllib.request.urlopen(f"{DASHBOARD}{path}", timeout=10) as response:
        return json.loads(response.read())


def _nodes() -> list[dict]:
    """GCS's node table through the state API (is_head_node comes from GCS, not guessed from an IP that
    every fake node shares)."""
    return _get("/api/v0/nodes?limit=100&detail=false")["data"]["result"]["result"]


def _head_alive() -> bool:
    return any(node["is_head_node"] and node["state"] == "ALIVE" for node in _nodes())


def _alive_workers() -> int:
    return sum(1 for node in _nodes() if not node["is_head_node"] and node["state"] == "ALIVE")


def _wait(ready, process: subprocess.Popen, temp_dir: Path, what: str, timeout: float = 180) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process is not None and process.poll() is not None:
            pytest.fail(f"ray start exited: {(temp_dir / 'ray-start.log').read_text()[-3000:]}")
        with contextlib.suppress(OSError, KeyError, ValueError):
            if ready():
                return time.monotonic() - start
        time.sleep(0.5)
    monitor = sorted((temp_dir).glob("session_*/logs/monitor.*"))
    tail = "\n".join(path.read_text()[-2000:] for path in monitor)
    pytest.fail(f"{what} not ready after {timeout} s; autoscaler log:\n{tail}")


def _end_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            time.sleep(1)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _submit(entrypoint: str) -> str:
    body = json.dumps({"entrypoint": entrypoint}).encode()
    request = urllib.request.Request(
        f"{DASHBOARD}/api/jobs/", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["submission_id"]


def test_a_job_scales_workers_up_from_zero_and_idle_workers_go_back_to_zero(head: Path) -> None:
    script = head / "job.py"
    script.write_text(JOB % {"workers": WORKERS})
    submitted = time.time()
    job_id = _submit(f"{sys.executable} {script}")
    status: dict = {}

    def finished() -> bool:
        status.update(_get(f"/api/jobs/{job_id}"))
        return status["status"] in ("SUCCEEDED", "FAILED", "STOPPED")

    _wait(finished, None, head, "the job", timeout=300)
    ended = time.time()
    busy_after_job = _alive_workers()
    logs = _get(f"/api/jobs/{job_id}/logs")["logs"]
    assert status["status"] == "SUCCEEDED", logs[-3000:]
    result = json.loads(next(line for line in logs.splitlines() if line.startswith('{"first_step"')))
    assert len(result["nodes"]) == WORKERS  # the demand became that many worker nodes
    assert busy_after_job == WORKERS  # still there when the job ends: they go only once idle
    _wait(lambda: _alive_workers() == 0, None, head, "scale-down to zero", timeout=180)
    zero = time.time()  # within 0.5 s of the workers' removal, unless the job's end was noticed late
    figures = {
        "submit_to_first_step_s": round(result["first_step"] - submitted, 1),
        "job_end_to_zero_workers_s": round(zero - result["end"], 1),
        "job_end_noticed_after_s": round(ended - result["end"], 1),
        "idle_timeout_s": IDLE_TIMEOUT_SECONDS,
    }
    print("autoscaling figures:", json.dumps(figures))
    # Idle workers go only after the idle timeout (the autoscaler's own clock starts at its next update).
    assert figures["job_end_to_zero_workers_s"] >= IDLE_TIMEOUT_SECONDS
