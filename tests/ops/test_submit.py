"""`submit` builds the job from the config and submits it with the token from the cluster's Secret.

The Ray test starts a real local Ray head with token authentication on non-default ports; the fake kubectl's
"port-forward" only announces itself, since the local dashboard already listens on the forwarded port.
"""

import base64
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from ray.job_submission import JobSubmissionClient
from typer.testing import CliRunner

from config import load_config
from ops.cli import app
from ops.submit import JOB_DIR, auth_headers, build_submission
from ops.tools import OpsError

RAY = Path(sys.executable).parent / "ray"
PORTS = {"port": 6392, "dashboard": 8292, "client": 10092, "agent": 52392}
TOKEN = "h10-test-token-0123456789abcdef0123456789abcdef"


def test_default_submission_uses_every_gpu_the_config_names_and_a_resumable_run() -> None:
    submission = build_submission(load_config({}), None)
    args = shlex.split(submission.entrypoint)
    # 4 worker pods x 8 GPUs of ml.p5.48xlarge: one Ray Train worker per GPU.
    assert args == [
        "python3", "train.py", "--run-name", "fsdp-train", "--num-workers", "32", "--gpus-per-worker", "1",
        "--storage-path", "/fsx/ray_results",
    ]  # fmt: skip
    assert submission.working_dir == JOB_DIR and (JOB_DIR / "train.py").is_file()


def test_run_name_and_extra_arguments_override_and_come_last() -> None:
    config = load_config({"ray.job.name": "exp-7", "storage.mount_path": "/data"})
    args = shlex.split(build_submission(config, None, ["--max-steps", "5", "--num-workers", "8"]).entrypoint)
    assert args[2:4] == ["--run-name", "exp-7"]
    assert args[-6:] == ["--storage-path", "/data/ray_results", "--max-steps", "5", "--num-workers", "8"]
    assert shlex.split(build_submission(config, "mine").entrypoint)[3] == "mine"


def test_a_cpu_only_cluster_gets_cpu_workers_one_per_pod() -> None:
    config = load_config(
        {
            "hyperpod.instance_groups": '[{"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},'
            '{"name": "workers", "instance_type": "ml.m5.4xlarge", "count": 2}]',
            "ray.worker_groups": '[{"name": "cpu", "instance_group": "workers", "replicas": 2,'
            '"max_replicas": 2, "efa": false}]',
        }
    )
    args = shlex.split(build_submission(config, None).entrypoint)
    assert args[4:8] == ["--num-workers", "2", "--gpus-per-worker", "0"]


def test_no_token_sends_no_header() -> None:
    assert auth_headers(None) == {}
    assert auth_headers("t") == {"Authorization": "Bearer t"}


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray head with token auth, on ports no other test here uses.

    `ray start --block` in its own process group, ended by signalling that group: `ray stop` would stop
    every Ray on the machine, including other people's.
    """
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    start = [
        str(RAY), "start", "--head", "--block", f"--port={PORTS['port']}",
        f"--dashboard-port={PORTS['dashboard']}",
        f"--ray-client-server-port={PORTS['client']}", f"--dashboard-agent-listen-port={PORTS['agent']}",
        "--min-worker-port=23000", "--max-worker-port=23099", "--include-dashboard=true", "--num-cpus=1",
        "--temp-dir=/tmp/h10-ray", "--disable-usage-stats",
    ]  # fmt: skip
    head = subprocess.Popen(
        start, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    address = f"http://127.0.0.1:{PORTS['dashboard']}"
    try:
        _wait_for_dashboard(address, head)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def _wait_for_dashboard(address: str, head: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"ray start exited: {head.stderr.read().decode()[-2000:]}")
        try:
            requests.get(f"{address}/api/version", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(1)
    raise AssertionError("the local Ray dashboard did not come up in 120 s")


def test_submit_reads_the_token_and_a_submission_without_it_is_refused(
    ray_head, deployed, fake_tools
) -> None:
    outputs, config = deployed
    fake_tools.answer("aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks", "")
    token = base64.b64encode(TOKEN.encode()).decode()
    fake_tools.answer(
        "kubectl --context demo-eks -n ray get secret ray-cluster-token -o json",
        {"data": {"auth_token": token}},
    )
    args = [
        "--outputs-file",
        str(outputs),
        "--config",
        str(config),
        "submit",
        "--local-port",
        str(PORTS["dashboard"]),
    ]
    result = CliRunner().invoke(app, [*args, "--", "--max-steps", "3"])
    assert result.exit_code == 0, result.output
    job_id = result.output.split()[1].rstrip(":")
    assert [call for call in fake_tools.calls() if "port-forward" in call] == [
        [
            "kubectl",
            "--context",
            "demo-eks",
            "-n",
            "ray",
            "port-forward",
            "svc/ray-cluster-head-svc",
            "8292:8265",
        ]
    ]
    client = JobSubmissionClient(ray_head, headers=auth_headers(TOKEN))
    info = client.get_job_info(job_id)
    assert info.entrypoint.endswith("--storage-path /fsx/ray_results --max-steps 3")
    assert "--num-workers 32" in info.entrypoint and "--run-name fsdp-train" in info.entrypoint
    client.stop_job(job_id)
    with pytest.raises(Exception, match=r"(?i)auth|401|403"):
        JobSubmissionClient(ray_head).submit_job(entrypoint="echo no token")


def _job_args(outputs: Path, config: Path, *args: str) -> list[str]:
    return [
        "--outputs-file",
        str(outputs),
        "--config",
        str(config),
        *args,
        "--local-port",
        str(PORTS["dashboard"]),
    ]


def _wait_state(client: JobSubmissionClient, job_id: str, states: set[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while (state := str(client.get_job_status(job_id).value)) not in states:
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.5)
    return state


def test_jobs_lists_logs_follows_and_stops_on_a_token_cluster(ray_head, deployed, fake_tools) -> None:
    outputs, config = deployed
    fake_tools.answer("aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks", "")
    fake_tools.answer(
        "kubectl --context demo-eks -n ray get secret ray-cluster-token -o json",
        {"data": {"auth_token": base64.b64encode(TOKEN.encode()).decode()}},
    )
    client = JobSubmissionClient(ray_head, headers=auth_headers(TOKEN))
    long_job = client.submit_job(
        entrypoint="python -c \"print('long-started', flush=True); import time; time.sleep(300)\"",
        metadata={"run_name": "exp-long"},
    )
    short_job = client.submit_job(
        entrypoint="python -c \"import time; print('one', flush=True); time.sleep(4); print('two')\" "
        "--run-name exp-short"
    )
    _wait_state(client, long_job, {"RUNNING"})
    runner = CliRunner()
    listed = runner.invoke(app, _job_args(outputs, config, "jobs"), env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if "raysubmit_" in line}
    assert "RUNNING" in rows[long_job] and "exp-long" in rows[long_job]
    # Follow re-attaches to the running short job and prints its whole log until it ends.
    followed = runner.invoke(app, _job_args(outputs, config, "logs", short_job, "--follow"))
    assert followed.exit_code == 0, followed.output
    assert "one" in followed.output and "two" in followed.output and "SUCCEEDED" in followed.output
    # Without a job id, `logs` reads the newest running job.
    _wait_until = time.monotonic() + 30
    while "long-started" not in (logged := runner.invoke(app, _job_args(outputs, config, "logs"))).output:
        assert time.monotonic() < _wait_until, logged.output
        time.sleep(0.5)
    stopped = runner.invoke(app, _job_args(outputs, config, "stop", long_job))
    assert stopped.exit_code == 0, stopped.output
    assert _wait_state(client, long_job, {"STOPPED", "FAILED", "SUCCEEDED"}) == "STOPPED"
    unknown = runner.invoke(app, _job_args(outputs, config, "logs", "raysubmit_nope"))
    assert isinstance(unknown.exception, OpsError), unknown.output  # main() prints it as one line
    assert str(unknown.exception).startswith("Ray: ")


def test_a_refused_token_is_one_line(ray_head, deployed, fake_tools) -> None:
    outputs, config = deployed
    fake_tools.answer("aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks", "")
    fake_tools.answer(
        "kubectl --context demo-eks -n ray get secret ray-cluster-token -o json",
        {"data": {"auth_token": base64.b64encode(b"not-the-token").decode()}},
    )
    for command in (["jobs"], ["submit"]):
        result = CliRunner().invoke(app, _job_args(outputs, config, *command))
        assert isinstance(result.exception, OpsError), (command, result.output, result.exception)
        assert "\n" not in str(result.exception)
