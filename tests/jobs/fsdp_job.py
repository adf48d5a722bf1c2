"""Helpers for the fsdp_ray job tests: launching train.py as a real process and watching its files."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
JOB_DIR = REPO / "jobs" / "fsdp_ray"
VENV_BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 300
# Token auth on, with a token of this test session only: nothing read from or written to ~/.ray.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

# A model small enough that Ray start-up, not compute, dominates the test time on two cores.
TINY = [
    "--cpu", "--num-workers", "2", "--d-model", "32", "--n-layers", "2", "--n-heads", "2",
    "--vocab-size", "128", "--seq-len", "16", "--batch-size", "4", "--lr", "3e-3",
]  # fmt: skip


def train_args(storage: Path, run_name: str, *extra: str) -> list[str]:
    return [*TINY, "--storage-path", str(storage), "--run-name", run_name, *extra]


def job_env(**extra: str) -> dict[str, str]:
    """RAY_ADDRESS=local: a test driver must start its own Ray, never join another one on this machine."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    env.update({"RAY_ADDRESS": "local", "RAY_USAGE_STATS_ENABLED": "0", **RAY_AUTH})
    env.update(extra)
    return env


def start_train(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Own session, so the test can kill the driver with everything it started (os.killpg)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "train.py", *args], cwd=JOB_DIR, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def run_train(args: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = start_train(args, log, env)
    try:
        rc = proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        kill_group(proc)
    output = log.read_text(errors="replace")
    assert rc == 0, f"train.py exited {rc}:\n{output[-4000:]}"
    return summary_of(output)


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=60)


def summary_of(output: str) -> dict[str, Any]:
    """The one JSON object line train.py prints; fails if there is not exactly one."""
    found = []
    for line in output.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    assert len(found) == 1, f"expected one JSON summary line, got {found}:\n{output[-4000:]}"
    return found[0]


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = RUN_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def progress(directory: Path) -> list[dict[str, Any]]:
    """Per-rank progress files that train.py writes with --progress-dir (one per rank and process)."""
    return (
        [json.loads(p.read_text()) for p in sorted(directory.glob("rank*.json"))]
        if directory.is_dir()
        else []
    )


def latest_per_rank(directory: Path) -> dict[int, dict[str, Any]]:
    """The newest process's progress for each rank (a restarted attempt writes new files)."""
    latest: dict[int, dict[str, Any]] = {}
    for p in progress(directory):
        if p["rank"] not in latest or p["started_at"] > latest[p["rank"]]["started_at"]:
            latest[p["rank"]] = p
    return latest


def registered_checkpoint(directory: Path, world_size: int = 2) -> int | None:
    """A checkpoint step that Ray Train has surely registered, judged from the workers' progress.

    Each worker's report queue holds one entry and the controller polls, consolidates and registers in
    one loop: once every rank has returned from the report two steps after checkpoint c, the poll that
    took c has been fully handled, so c is registered and a restart resumes from c or later.
    """
    ranks = latest_per_rank(directory)
    if len(ranks) < world_size or any(p["checkpoint_step"] is None for p in ranks.values()):
        return None
    step = min(p["checkpoint_step"] for p in ranks.values())
    return step if all(p["step"] >= step + 2 for p in ranks.values()) else None


WORDS = ("the", "a", "model", "ray", "train", "shard", "step", "token", "loss", "batch", "node", "gpu", "cpu")


def make_hf_inputs(directory: Path) -> tuple[Path, Path]:
    """A small text dataset and a word-level tokenizer trained on it, both on disk (no hub access here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: PLC0415 - HF tests only
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    lines = [" ".join(WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(12)) for i in range(300)]
    text = directory / "corpus.txt"
    text.write_text("\n".join(lines) + "\n")
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(text)], trainers.WordLevelTrainer(special_tokens=["[UNK]", "[EOS]"]))
    tokenizer_dir = directory / "tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]").save_pretrained(
        tokenizer_dir
    )
    return text, tokenizer_dir


def hf_env(cache: Path) -> dict[str, str]:
    return {"HF_HOME": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
