"""The seed's task end to end through the real job (train.py starting its own local Ray): sequence
classification on CoLA-shaped JSONL with its validation split, on a tiny decoder (GPT-2, whose
tokenizer has no pad token) and a tiny encoder (BERT), built locally from transformers configs.

The job's final evaluation is compared with a reference computed outside the job: the exported model
loaded with `from_pretrained`, each validation sentence classified alone (no padding)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cola import accuracy_and_mcc, make_model, make_tokenizer, reference_predictions, write_cola
from fsdp_job import (
    hf_env,
    job_env,
    kill_group,
    latest_per_rank,
    registered_checkpoint,
    run_train,
    start_train,
    summary_of,
    train_args,
    wait_for,
)

pytestmark = pytest.mark.ray

N_TRAIN, N_EVAL = 90, 37  # 2 workers x 4 rows: 11 steps per epoch; 37 validation rows, odd on purpose
STEPS_PER_EPOCH = N_TRAIN // 2 // 4
# Ray Data's progress bars, forwarded from the workers to the driver's stderr, would share lines with
# the summary on stdout in the one log these tests read.
QUIET = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}


def classification_args(
    storage: Path, run: str, model: Path, data: tuple[Path, Path], *extra: str
) -> list[str]:
    return train_args(
        storage, run, "--model", str(model), "--init", "random", "--task", "classification",
        "--dataset", str(data[0]), "--eval-data", str(data[1]), "--text-field", "sentence", *extra,
    )  # fmt: skip


def in_epoch_2(proc: subprocess.Popen, marks: Path) -> bool:
    """A registered checkpoint at step 12 or later; an error if the driver ended before that."""
    if proc.poll() is not None:
        raise AssertionError(f"train.py exited {proc.returncode} before a checkpoint in epoch 2")
    return (registered_checkpoint(marks) or 0) >= 12


def check_against_reference(summary: dict[str, Any], validation: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

    rows = [json.loads(line) for line in validation.read_text().splitlines()]
    model = AutoModelForSequenceClassification.from_pretrained(summary["export_path"])
    tokenizer = AutoTokenizer.from_pretrained(summary["export_path"])
    preds = reference_predictions(model, tokenizer, [r["sentence"] for r in rows])
    accuracy, mcc = accuracy_and_mcc(np.asarray([r["label"] for r in rows]), preds)
    evaluation = summary["eval"]
    assert evaluation["eval_rows"] == N_EVAL  # every validation row, once
    assert evaluation["eval_accuracy"] == pytest.approx(accuracy)
    assert evaluation["eval_mcc"] == pytest.approx(mcc)


def test_decoder_classifies_by_its_last_real_token_and_resumes_mid_epoch(tmp_path: Path) -> None:
    """GPT-2 pads with EOS; --epochs 4; rank 1 is killed after a checkpoint inside an epoch (never on
    a boundary: 11 steps per epoch, a checkpoint every 4) and Ray Train restarts the worker group from
    it. (A worker, not the driver: a driver killed while Ray Train rewrites its
    checkpoint_manager_snapshot.json leaves that file empty, and the rerun cannot start; seen here.)"""
    tokenizer = make_tokenizer(tmp_path / "tok", with_pad=False)
    model = make_model(tmp_path / "gpt2", "gpt2", tokenizer)
    data = write_cola(tmp_path / "cola", N_TRAIN, N_EVAL)
    storage, marks = tmp_path / "results", tmp_path / "progress"
    args = classification_args(
        storage, "gpt2", model, data, "--epochs", "4", "--checkpoint-every", "4", "--eval-every", "8",
        "--progress-dir", str(marks),
    )  # fmt: skip
    log = tmp_path / "run.log"
    proc = start_train(args, log, job_env(**hf_env(tmp_path / "cache"), **QUIET))
    try:
        # Long: on two shared cores Ray's start, the row count and the first read take minutes.
        wait_for(lambda: in_epoch_2(proc, marks), "a checkpoint in epoch 2", 900)
        os.kill(latest_per_rank(marks)[1]["pid"], signal.SIGKILL)
        assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
    finally:
        kill_group(proc)

    summary = summary_of(log.read_text())
    total = 4 * STEPS_PER_EPOCH
    assert summary["steps_completed"] == total
    first, resumed = summary["start_steps"]
    assert first == 0
    assert 12 <= resumed < total
    assert resumed % STEPS_PER_EPOCH  # inside an epoch
    state = json.loads((Path(summary["checkpoint_path"]) / "train_state.json").read_text())
    # Where an uninterrupted run ends: the last batch of the fourth epoch (index 3).
    assert state["data"] == {"epoch": 3, "samples": STEPS_PER_EPOCH * 2 * 4}
    # One Ray Data pass in the restarted workers (the resumed epoch), replayed from memory after.
    assert "training data: 1 Ray Data pass(es), up to epoch 4" in log.read_text()
    check_against_reference(summary, data[1])


def test_encoder_evaluates_every_validation_row_against_a_reference(tmp_path: Path) -> None:
    tokenizer = make_tokenizer(tmp_path / "tok", with_pad=True)
    model = make_model(tmp_path / "bert", "bert", tokenizer)
    data = write_cola(tmp_path / "cola", N_TRAIN, N_EVAL)
    args = classification_args(
        tmp_path / "results", "bert", model, data, "--max-steps", "14", "--checkpoint-every", "7",
        "--eval-every", "7",
    )  # fmt: skip
    summary = run_train(args, tmp_path / "run.log", job_env(**hf_env(tmp_path / "cache"), **QUIET))
    assert summary["steps_completed"] == 14
    log = (tmp_path / "run.log").read_text()
    assert log.count("eval_mcc=") == 2
    assert "training data: 1 Ray Data pass(es), up to epoch 2" in log  # 14 steps: into the second epoch
    check_against_reference(summary, data[1])
