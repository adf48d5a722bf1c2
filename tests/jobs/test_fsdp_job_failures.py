"""The fsdp_ray job's failure policy on a real `ray start --head` cluster: a deterministic crash ends the
run in bounded time with its error and exit 3; a Hugging Face model smaller than the built-in
vocabulary trains on synthetic data (the held-out case)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fsdp_job import RUN_TIMEOUT_S, job_env, kill_group, progress, run_train, start_train, train_args
from test_fsdp_job_cluster import ray_head  # noqa: F401 - the module's own head node (fixture)

pytestmark = pytest.mark.ray

EXIT_GAVE_UP = 3  # train.EXIT_GAVE_UP, spelled out: the exit status is the interface under test
LIMIT = 2  # --max-failures-without-progress: one attempt fewer than the default 3 (unit-tested) on two cores
POLICY_TIMEOUT_S = 2 * RUN_TIMEOUT_S  # up to LIMIT + 1 worker-group starts on a loaded machine


def run_to_failure(args: list[str], log: Path, env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = start_train(args, log, env)
    try:
        rc = proc.wait(timeout=POLICY_TIMEOUT_S)
    finally:
        kill_group(proc)
    return rc, log.read_text(errors="replace"), time.monotonic() - started


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize(
    ("fail_at", "attempts", "reached"),
    [
        (1, LIMIT, 0),  # before any step: LIMIT attempts, none gets anywhere
        (5, LIMIT + 1, 4),  # after the checkpoint at step 3: the first failure made progress, the rest not
    ],
)
def test_a_deterministic_crash_ends_the_run_with_its_error(
    ray_head: dict[str, str],  # noqa: F811
    tmp_path: Path,
    fail_at: int,
    attempts: int,
    reached: int,
) -> None:
    marks = tmp_path / "progress"
    # sync: each checkpoint is registered before the next step, so the progress mark is exact.
    args = train_args(
        tmp_path / "results", "crash", "--max-steps", "8", "--checkpoint-every", "3", "--checkpoint-mode",
        "sync", "--fail-at-step", str(fail_at), "--max-failures-without-progress", str(LIMIT),
        "--progress-dir", str(marks),
    )  # fmt: skip
    rc, output, seconds = run_to_failure(args, tmp_path / "run.log", job_env(RAY_ADDRESS=ray_head["gcs"]))

    assert rc == EXIT_GAVE_UP, output[-4000:]
    [error] = error_lines(output)
    checkpoint = "3" if reached else "none"
    assert re.fullmatch(
        f"error: run crash failed {LIMIT} times in a row without progress "
        f"\\(at step {reached}, last checkpoint {checkpoint}\\): "
        f"(lm_hooks\\.)?InjectedFailureError: injected failure before step {fail_at}",
        error,
    ), error
    assert output.count("retrying run crash from its latest checkpoint after:") == attempts - 1
    # No attempt got past the failing step (every rank of every attempt wrote its progress file).
    assert max(p["step"] for p in progress(marks)) == fail_at - 1
    print(f"deterministic crash at step {fail_at}: run ended after {seconds:.1f} s, {attempts} attempts")


def test_a_model_with_a_smaller_vocabulary_trains_on_synthetic_data(
    ray_head: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """A tiny Qwen2 (vocab 303, weights and config, no tokenizer) on the default synthetic data."""
    from transformers import AutoModelForCausalLM, Qwen2Config  # noqa: PLC0415

    shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 2, "max_position_embeddings": 64}  # fmt: skip
    model = tmp_path / "qwen303"
    AutoModelForCausalLM.from_config(Qwen2Config(vocab_size=303, **shape)).save_pretrained(model)
    args = train_args(tmp_path / "results", "qwen", "--model", str(model), "--max-steps", "4",
                      "--checkpoint-every", "2")  # fmt: skip
    summary = run_train(args, tmp_path / "run.log", job_env(RAY_ADDRESS=ray_head["gcs"]))
    assert summary["steps_completed"] == 4
    assert summary["start_steps"] == [0]  # no failed attempt
    exported = AutoModelForCausalLM.from_pretrained(summary["export_path"])
    assert exported.config.vocab_size == 303
