"""Acceptance, for real: a local Ray exports Ray Train's and the job's throughput metrics, and Debian's
Prometheus, running the scrape configuration this project generates, stores them.

Ray runs on ports of its own (6394, 8294, ...) and in its own temp dir, so that other local Rays are left
alone. `ray stop` would stop every Ray on the machine: this test ends only the processes that carry its own
marker in their environment (every Ray process inherits it from `ray start`). Prometheus must be installed
(`apt-get install prometheus`): without it the test fails, it does not skip.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_config
from observability.dashboards import MFU, TOKENS_PER_SECOND
from observability.scrape import RAY_JOB, ray_file_job, scrape_yaml

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
TEMP_DIR = Path("/tmp/h13-ray")
GCS_ADDRESS = "127.0.0.1:6394"
PROMETHEUS = "127.0.0.1:9094"
# Every port Ray would otherwise take at its default, moved to this test's own range.
RAY_PORTS = [
    "--node-ip-address=127.0.0.1",
    "--port=6394",
    "--dashboard-port=8294",
    "--ray-client-server-port=10094",
    "--metrics-export-port=8094",
    "--dashboard-agent-listen-port=52394",
    "--dashboard-agent-grpc-port=52494",
    "--runtime-env-agent-port=52594",
    "--node-manager-port=52694",
    "--object-manager-port=52794",
    "--min-worker-port=24000",
    "--max-worker-port=24999",
]
RUN_NAME = "h13-throughput"
# Token authentication on, as on the cluster (KubeRay's authOptions), with a token of this test only: an
# explicit mode also keeps Ray from switching it on by itself when ~/.ray/auth_token exists. Ray serves its
# metrics port without the token (Prometheus cannot send one); its dashboard and job API require it.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
OWNER_VARIABLE = "RAY_HYPERPOD_OBSERVABILITY_TEST"

# The training job itself (jobs/fsdp_ray, tiny and on CPU), joined to this test's Ray: its rank 0 publishes
# tokens/s and MFU at every progress line (lm_metrics), which comes every half second here.
JOB = [
    sys.executable, str(REPO / "jobs" / "fsdp_ray" / "train.py"), "--run-name", RUN_NAME,
    "--storage-path", str(TEMP_DIR / "results"), "--gpus-per-worker", "0", "--num-workers", "1",
    "--max-steps", "60", "--checkpoint-every", "30", "--log-every-s", "0.5", "--no-export",
    "--eval-every", "0",
    "--d-model", "32", "--n-layers", "2", "--n-heads", "2", "--vocab-size", "128", "--seq-len", "16",
    "--batch-size", "4",
]  # fmt: skip


def _wait_for(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _query(path: str, **params: str) -> dict:
    url = f"http://{PROMETHEUS}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _series(match: str) -> list[dict]:
    """Every series matching `match` stored in the last 10 minutes (also those whose target has gone)."""
    answer = _query("/api/v1/series", **{"match[]": match, "start": str(time.time() - 600)})
    return answer["data"]


def _own_processes(marker: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone, or not ours to read
                continue
    return pids


def _stop_own_ray(marker: bytes) -> None:
    for _ in range(3):
        pids = _own_processes(marker)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(1)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Path]:
    shutil.rmtree(TEMP_DIR, ignore_errors=True)
    token = uuid.uuid4().hex
    marker = f"{OWNER_VARIABLE}={token}".encode()
    # Ray exports every 10 s by default; once a second keeps the test short.
    env = {
        **os.environ,
        **RAY_AUTH,
        OWNER_VARIABLE: token,
        "RAY_metrics_report_interval_ms": "1000",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    try:
        started = subprocess.run(
            [RAY, "start", "--head", *RAY_PORTS, f"--temp-dir={TEMP_DIR}", "--num-cpus=2",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1"],
            check=False, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield TEMP_DIR / "session_latest" / "prom_metrics_service_discovery.json"
    finally:
        _stop_own_ray(marker)


@pytest.fixture(scope="module")
def prometheus(local_ray: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Debian's prometheus is not installed: apt-get install -y prometheus")
    _wait_for("Ray's service discovery file", local_ray.exists, 60)
    # The project's configuration (in-cluster store, which allows a 1 s interval), with Ray's discovery file
    # in place of Kubernetes discovery; no DCGM exporter here.
    config = load_config(
        {
            "observability.store": "in_cluster",
            "observability.scrape_interval_seconds": "1",
            "observability.dcgm_exporter": "false",
        }
    )
    work = tmp_path_factory.mktemp("prometheus")
    config_file = work / "prometheus.yml"
    config_file.write_text(scrape_yaml(config, ray=ray_file_job(str(local_ray))))
    process = subprocess.Popen(
        [binary, f"--config.file={config_file}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address={PROMETHEUS}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w"),
    )  # fmt: skip
    try:
        _wait_for("Prometheus to answer", _up_or_none, 30)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _up_or_none() -> bool:
    try:
        return _query("/api/v1/query", query="up")["status"] == "success"
    except OSError:
        return False


@pytest.fixture(scope="module")
def trained(prometheus: None) -> list[float]:
    """The tokens/s figures the job printed in its progress lines."""
    env = {**os.environ, **RAY_AUTH, "RAY_ADDRESS": GCS_ADDRESS}
    done = subprocess.run(
        JOB, check=False, env=env, timeout=300, cwd=TEMP_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logged = [float(value) for value in re.findall(r"tokens/s=(\d+)", done.stdout + done.stderr)]
    assert logged, "the job printed no progress line"
    return logged


def test_prometheus_scrapes_every_ray_metrics_endpoint_through_the_generated_job(trained):
    targets = _query("/api/v1/targets")["data"]["activeTargets"]
    ray_targets = [target for target in targets if target["labels"]["job"] == RAY_JOB]
    assert ray_targets and all(target["health"] == "up" for target in ray_targets)


def test_ray_train_series_reach_prometheus(trained):
    names = {series["__name__"] for series in _series('{__name__=~"ray_train_.+"}')}
    assert "ray_train_worker_group_start_total_time_s" in names or "ray_train_controller_state" in names, (
        names
    )


def test_job_throughput_series_reach_prometheus_with_run_and_rank(trained):
    tokens = _series(TOKENS_PER_SECOND)
    assert {(s["run"], s["rank"], s["job"]) for s in tokens} == {(RUN_NAME, "0", RAY_JOB)}
    assert {s["run"] for s in _series(MFU)} == {RUN_NAME}
    # The stored values are the ones the job printed (its progress lines round to whole tokens/s).
    stored = _query("/api/v1/query", query=f"max_over_time({TOKENS_PER_SECOND}[10m])")["data"]["result"]
    peak = float(stored[0]["value"][1])
    assert peak > 0 and any(abs(peak - value) <= 1 for value in trained), (peak, trained)
