"""The supervisor against a real Ray 2.60 head (`ray start --head`, token auth on): what the fake job API of
test_supervisor_job_api.py assumes holds for the real one: the head's session name, the driver's exit
code of a failed job, and the driver log's tail by submission id."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsdp_job import VENV_BIN, job_env, kill_group, wait_for

pytestmark = pytest.mark.ray

SUPERVISOR = Path(__file__).resolve().parents[2] / "jobs" / "supervisor.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A head of this module only (own ports and temp dir), stopped by killing its session."""
    gcs, dashboard = _free_port(), _free_port()
    env = job_env()
    env.pop("RAY_ADDRESS")
    temp_dir = tmp_path_factory.mktemp("supervised")
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=1", f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        # Every port of its own: another Ray on this machine holds the defaults (the agent's 52365).
        f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}",
    ]  # fmt: skip
    with (temp_dir / "head.log").open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        wait_for(
            lambda: _supervise(address, "print('up')", "probe").returncode == 0, "the job API", timeout=180
        )
        yield {"address": address, "temp_dir": str(temp_dir)}
    finally:
        kill_group(proc)


def _supervise(address: str, code: str, run: str) -> subprocess.CompletedProcess[str]:
    env = job_env()
    env.pop("RAY_ADDRESS")
    cmd = [
        sys.executable, str(SUPERVISOR), "--address", address, "--poll-s", "0.2", "--head-wait-s", "5",
        "--log-tail-lines", "5", "--", "python3", "-c", code, "--run-name", run,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def _events(stderr: str) -> list[dict]:
    prefix = "supervisor: {"
    return [
        json.loads(line[len("supervisor: ") :]) for line in stderr.splitlines() if line.startswith(prefix)
    ]


def test_after_success_only_the_log_tail_is_printed(head: dict[str, str]) -> None:
    done = _supervise(head["address"], "for i in range(1000): print('line', i)", "tail")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "line 999"
    assert len(lines) <= 5
    # The session recorded at submit is this head's (its session directory).
    watching = next(e for e in _events(done.stderr) if e["event"] == "watching")
    assert (Path(head["temp_dir"]) / watching["session"]).is_dir()


def test_a_driver_exiting_2_is_not_resubmitted_and_its_error_is_printed(head: dict[str, str]) -> None:
    code = "import sys; print('train.py: error: no column text in the dataset', file=sys.stderr); sys.exit(2)"
    done = _supervise(head["address"], code, "user-error")
    assert done.returncode == 5, done.stderr[-3000:]
    assert "no column text in the dataset" in done.stderr
    assert [e["event"] for e in _events(done.stderr)].count("submitted") == 1
