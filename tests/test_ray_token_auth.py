"""A real local Ray head with token authentication, as KubeRay configures it (RAY_AUTH_MODE=token and
RAY_AUTH_TOKEN from the cluster's Secret): the job API refuses a submission without the token and with a
wrong one, and runs the job when the token comes as a bearer token (what `ray job submit` sends with
RAY_AUTH_TOKEN set, and what the ops CLI sends)."""

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

import pytest

RAY = Path(sys.executable).with_name("ray")
# Ports no default Ray uses, so that another local Ray on this machine is never touched.
PORTS = {
    "--port": 6391,
    "--dashboard-port": 8291,
    "--ray-client-server-port": 10091,
    "--node-manager-port": 17311,
    "--object-manager-port": 17322,
    "--dashboard-agent-listen-port": 17333,
    "--dashboard-agent-grpc-port": 17344,
    "--runtime-env-agent-port": 17355,
    "--metrics-export-port": 17366,
    "--min-worker-port": 17400,
    "--max-worker-port": 17440,
}
DASHBOARD = f"http://127.0.0.1:{PORTS['--dashboard-port']}"


@pytest.fixture(scope="module")
def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def ray_head(token: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ray start --head --block` in its own process group; the group is ended afterwards (never
    `ray stop`, which would stop every Ray of this user on the machine)."""
    temp_dir = Path("/tmp/h9-ray") / uuid.uuid4().hex[:8]  # Ray's socket paths must stay short
    temp_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "HOME": str(tmp_path_factory.mktemp("home")),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    args = [str(RAY), "start", "--head", "--block", "--num-cpus", "1", "--dashboard-host", "127.0.0.1"]
    args += ["--temp-dir", str(temp_dir), "--disable-usage-stats"]
    args += [f"{flag}={port}" for flag, port in PORTS.items()]
    log = (temp_dir / "ray-start.log").open("w")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_dashboard(process, temp_dir)
        _wait_for_node(token)
        yield DASHBOARD
    finally:
        _end_group(process)
        log.close()


def _wait_for_dashboard(process: subprocess.Popen, temp_dir: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ray start exited: {(temp_dir / 'ray-start.log').read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{DASHBOARD}/api/version", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (even 401): it is up
        except OSError:
            time.sleep(1)
    pytest.fail("the Ray dashboard did not come up")


def _wait_for_node(token: str, timeout: float = 120) -> None:
    """The job API needs the head's raylet and agent, which register after the dashboard is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = get(DASHBOARD, "/nodes?view=summary", {"Authorization": f"Bearer {token}"})
        nodes = summary.get("data", {}).get("summary", [])
        if any(node.get("raylet", {}).get("state") == "ALIVE" for node in nodes):
            return
        time.sleep(1)
    pytest.fail("the Ray head node did not register")


def _end_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            time.sleep(1)  # children of the group exit after ray start itself
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def submit(dashboard: str, headers: dict[str, str]) -> tuple[int, dict]:
    body = json.dumps({"entrypoint": "python -c 'print(6 * 7)'"}).encode()
    request = urllib.request.Request(
        f"{dashboard}/api/jobs/",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def get(dashboard: str, path: str, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(f"{dashboard}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_submission_without_the_token_is_refused(ray_head: str) -> None:
    status, _ = submit(ray_head, {})
    assert status in (401, 403)


def test_a_submission_with_a_wrong_token_is_refused(ray_head: str) -> None:
    status, _ = submit(ray_head, {"Authorization": f"Bearer {uuid.uuid4().hex}"})
    assert status in (401, 403)


def test_a_submission_with_the_token_runs(ray_head: str, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    status, body = submit(ray_head, auth)
    assert status == 200, body
    job_id = body["submission_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = get(ray_head, f"/api/jobs/{job_id}", auth)
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(1)
    assert job["status"] == "SUCCEEDED", job
    logs = get(ray_head, f"/api/jobs/{job_id}/logs", auth)["logs"]
    assert "42" in logs
