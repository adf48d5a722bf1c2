"""The fsdp_ray job on a `ray start --head` cluster: job submission, a killed worker, the HF data path."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsdp_job import (
    JOB_DIR,
    RUN_TIMEOUT_S,
    VENV_BIN,
    hf_env,
    job_env,
    kill_group,
    latest_per_rank,
    make_hf_inputs,
    progress,
    registered_checkpoint,
    run_train,
    start_train,
    summary_of,
    train_args,
    wait_for,
)

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local head node on free ports with its own temp dir; `ray stop` runs even if start fails."""
    gcs, dashboard = _free_port(), _free_port()
    env = job_env()
    env.pop("RAY_ADDRESS")
    temp_dir = tmp_path_factory.mktemp("rayhead")
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=4", f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]  # fmt: skip
    try:
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=180)
        yield {
            "gcs": f"127.0.0.1:{gcs}",
            "dashboard": f"http://127.0.0.1:{dashboard}",
            "env_path": env["PATH"],
        }
    finally:
        stop = [str(VENV_BIN / "ray"), "stop", "--force"]
        subprocess.run(stop, check=False, env=env, capture_output=True, timeout=120)


def test_job_submission(ray_head: dict[str, str], tmp_path: Path) -> None:
    storage = tmp_path / "results"
    cmd = [
        str(VENV_BIN / "ray"), "job", "submit", "--address", ray_head["dashboard"],
        "--working-dir", str(JOB_DIR), "--", "python3", "train.py",
        *train_args(storage, "submitted", "--max-steps", "6", "--checkpoint-every", "3"),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, check=False, env=job_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "succeeded" in output
    summary = summary_of(done.stdout)
    assert summary["steps_completed"] == 6
    assert summary["start_steps"] == [0]
    assert Path(summary["checkpoint_path"]).parent == storage / "submitted"


def test_worker_killed_resumes_from_last_checkpoint(ray_head: dict[str, str], tmp_path: Path) -> None:
    storage, marks = tmp_path / "results", tmp_path / "progress"
    every = 5
    args = train_args(storage, "killed", "--max-steps", "30", "--checkpoint-every", str(every))
    env = job_env(RAY_ADDRESS=ray_head["gcs"])
    proc = start_train([*args, "--progress-dir", str(marks)], tmp_path / "run.log", env)
    try:
        saved = wait_for(lambda: registered_checkpoint(marks), "a registered checkpoint")
        victim = latest_per_rank(marks)[1]
        os.kill(victim["pid"], signal.SIGKILL)
        assert proc.wait(timeout=RUN_TIMEOUT_S) == 0, (tmp_path / "run.log").read_text()[-4000:]
    finally:
        kill_group(proc)

    summary = summary_of((tmp_path / "run.log").read_text())
    assert summary["steps_completed"] == 30
    assert len(summary["start_steps"]) == 2, summary
    first, restarted = summary["start_steps"]
    assert first == 0
    assert restarted >= saved > 0
    assert restarted % every == 0
    reached = max(p["step"] for p in progress(marks) if p["start_step"] == 0)
    assert 0 <= reached - restarted <= every, f"lost {reached - restarted} steps"


def test_driver_restart_resumes_from_latest_checkpoint(ray_head: dict[str, str], tmp_path: Path) -> None:
    """Kills the whole driver process group (as a crashed or stopped job), then starts it again."""
    storage, marks = tmp_path / "results", tmp_path / "progress"
    env = job_env(RAY_ADDRESS=ray_head["gcs"])
    args = train_args(storage, "restart", "--max-steps", "40", "--checkpoint-every", "4")
    proc = start_train([*args, "--progress-dir", str(marks)], tmp_path / "first.log", env)
    try:
        saved = wait_for(lambda: registered_checkpoint(marks), "a registered checkpoint")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_group(proc)

    summary = run_train(args, tmp_path / "second.log", env)
    assert summary["steps_completed"] == 40
    assert len(summary["start_steps"]) == 1
    resumed = summary["start_steps"][0]
    assert resumed >= saved > 0
    assert resumed % 4 == 0


def test_rerun_of_finished_run_is_a_no_op(ray_head: dict[str, str], tmp_path: Path) -> None:
    """Ray Train V2 resumes any run whose name and storage path exist, finished ones included."""
    env = job_env(RAY_ADDRESS=ray_head["gcs"])
    args = train_args(tmp_path / "results", "again", "--checkpoint-every", "3", "--max-steps", "3")
    first = run_train(args, tmp_path / "first.log", env)
    again = run_train(args, tmp_path / "again.log", env)
    assert again == {**first, "start_steps": [3]}


def test_hf_dataset_and_tokenizer_from_disk(ray_head: dict[str, str], tmp_path: Path) -> None:
    text, tokenizer_dir = make_hf_inputs(tmp_path / "hf")
    env = job_env(RAY_ADDRESS=ray_head["gcs"], **hf_env(tmp_path / "cache"))
    hf = ["--hf-dataset", "text", "--hf-data-files", str(text), "--hf-tokenizer", str(tokenizer_dir)]
    args = train_args(tmp_path / "results", "hf", "--max-steps", "8", "--checkpoint-every", "4", *hf)
    summary = run_train(args, tmp_path / "run.log", env)
    assert summary["steps_completed"] == 8
    assert math.isfinite(summary["final_loss"])
    assert "HF data: 3900 tokens, tokenizer vocab 15" in (tmp_path / "run.log").read_text()
