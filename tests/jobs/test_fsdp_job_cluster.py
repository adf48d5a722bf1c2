"""The fsdp_ray job on a `ray start --head` cluster: job submission, a killed worker, resume, fail-fast,
and the Hugging Face model and Ray Data paths."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
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
    make_labelled_dataset,
    make_tiny_model,
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


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at all (with token auth on, the dashboard answers 401)."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A head node of this module only: `ray start --block` in its own session, free ports, own temp dir.

    Stopped by killing that session, never with `ray stop`, which would stop every Ray on the machine.
    """
    gcs, dashboard = _free_port(), _free_port()
    env = job_env()
    env.pop("RAY_ADDRESS")
    temp_dir = tmp_path_factory.mktemp("rayhead")
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=4", f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]  # fmt: skip
    with (temp_dir / "head.log").open("wb") as out:
        head = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = [str(VENV_BIN / "ray"), "status", f"--address=127.0.0.1:{gcs}"]
        wait_for(
            lambda: subprocess.run(status, env=env, capture_output=True, check=False).returncode == 0,
            "the Ray head to start", timeout=180,
        )  # fmt: skip
        wait_for(lambda: _answers(f"http://127.0.0.1:{dashboard}/api/version"), "the dashboard", timeout=180)
        yield {"gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}"}
    finally:
        kill_group(head)


def test_job_submission(ray_head: dict[str, str], tmp_path: Path) -> None:
    storage = tmp_path / "results"
    cmd = [
        str(VENV_BIN / "ray"), "job", "submit", "--address", ray_head["dashboard"],
        "--working-dir", str(JOB_DIR),
        # Other Ray instances may run on this machine: the job's driver must join this head, by address.
        "--runtime-env-json", json.dumps({"env_vars": {"RAY_ADDRESS": ray_head["gcs"]}}),
        "--", "python3", "train.py",
        *train_args(storage, "submitted", "--max-steps", "6", "--checkpoint-every", "3"),
    ]  # fmt: skip
    env = job_env()
    env.pop("RAY_ADDRESS")  # it would override --address (and "local" may find another Ray here)
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
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

    def caught_up() -> int | None:
        """The registered step, once no later checkpoint is in flight: with async saves a checkpoint is
        registered some steps after it was taken, and a kill in that window loses those steps too."""
        saved = registered_checkpoint(marks)
        reached = max((p["step"] for p in progress(marks) if p["start_step"] == 0), default=0)
        return saved if saved and reached - saved < every else None

    try:
        saved = wait_for(caught_up, "a registered checkpoint with none in flight")
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


def test_causal_lm_from_jsonl_resumes_its_data_and_a_changed_model_fails_fast(
    ray_head: dict[str, str], tmp_path: Path
) -> None:
    """A tiny Llama from disk on JSONL text with a Parquet validation set, all through Ray Data.

    Reruns: a finished run is a no-op (Ray Train V2 resumes any run whose name exists); a larger
    --max-steps continues from the saved data position; a different model stops at once, unretried.
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    text, tokenizer_dir = make_hf_inputs(tmp_path / "hf")
    model = make_tiny_model(tmp_path / "llama", "llama", tokenizer_dir)
    lines = text.read_text().splitlines()
    train_file, eval_file = tmp_path / "train.jsonl", tmp_path / "eval.parquet"
    train_file.write_text("".join(f"{json.dumps({'text': line})}\n" for line in lines))
    pq.write_table(pa.table({"text": lines[:40]}), eval_file)
    env = job_env(RAY_ADDRESS=ray_head["gcs"], **hf_env(tmp_path / "cache"))
    data = ["--model", str(model), "--init", "random", "--tokenizer", str(tokenizer_dir),
            "--dataset", str(train_file),
            "--eval-data", str(eval_file), "--eval-every", "3", "--eval-batches", "2",
            "--checkpoint-every", "3"]  # fmt: skip
    storage = tmp_path / "results"
    first = run_train(train_args(storage, "lm", *data, "--max-steps", "6"), tmp_path / "first.log", env)
    assert first["steps_completed"] == 6
    assert "eval_loss=" in (tmp_path / "first.log").read_text()
    again = run_train(train_args(storage, "lm", *data, "--max-steps", "6"), tmp_path / "again.log", env)
    # Nothing trained, so nothing evaluated: the rerun's summary has no evaluation of its own.
    assert again == {**first, "start_steps": [6], "eval": {}}

    longer = run_train(train_args(storage, "lm", *data, "--max-steps", "10"), tmp_path / "longer.log", env)
    assert longer["start_steps"] == [6]
    state = json.loads((Path(longer["checkpoint_path"]) / "train_state.json").read_text())
    assert state["data"] == {"epoch": 0, "samples": 10 * 4 * 2}  # 10 steps x 4 rows x 2 workers, one epoch
    reloaded = AutoModelForCausalLM.from_pretrained(longer["export_path"])
    assert reloaded.config.architectures == ["LlamaForCausalLM"]

    wider = make_tiny_model(tmp_path / "wider", "llama", tokenizer_dir, hidden_size=64)
    changed = [*data[:1], str(wider), *data[2:]]
    proc = start_train(
        train_args(storage, "lm", *changed, "--max-steps", "12"), tmp_path / "changed.log", env
    )
    try:
        rc = proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        kill_group(proc)
    output = (tmp_path / "changed.log").read_text()
    assert rc == 2, output[-4000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-4000:]
    assert re.search(
        r"does not match this run \(lm_head\.weight: saved \[\d+, 32\], now \[\d+, 64\]", errors[0]
    )
    assert "parameters differ" in errors[0]
    assert "use a new --run-name" in errors[0]


def test_classification_fine_tune_with_eval_accuracy_and_export(
    ray_head: dict[str, str], tmp_path: Path
) -> None:
    """The seed's shape of job: a BERT-family classifier on a GLUE/CoLA-like dataset from disk."""
    from transformers import AutoModelForSequenceClassification  # noqa: PLC0415

    _, tokenizer_dir = make_hf_inputs(tmp_path / "hf")
    model = make_tiny_model(tmp_path / "bert", "bert", tokenizer_dir)
    dataset = make_labelled_dataset(tmp_path / "cola")
    env = job_env(RAY_ADDRESS=ray_head["gcs"], **hf_env(tmp_path / "cache"))
    args = train_args(
        tmp_path / "results", "cola", "--model", str(model), "--init", "random", "--task", "classification",
        "--dataset", str(dataset), "--text-field", "sentence", "--eval-split", "validation",
        "--max-steps", "8", "--checkpoint-every", "4", "--eval-every", "4", "--eval-batches", "2",
    )  # fmt: skip
    summary = run_train(args, tmp_path / "run.log", env)
    assert summary["steps_completed"] == 8
    assert math.isfinite(summary["final_loss"])
    log = (tmp_path / "run.log").read_text()
    assert log.count("eval_accuracy=") == 2
    exported = AutoModelForSequenceClassification.from_pretrained(summary["export_path"])
    assert exported.config.architectures == ["BertForSequenceClassification"]
    assert exported.config.num_labels == 2
