"""Gaps between training steps caused by the data path of jobs/fsdp_ray: epoch boundaries and evaluations.

A classification run (a tiny BERT from a transformers config, random init, on CoLA-shaped JSONL with a
validation file, all built here, no downloads) of several short epochs with evaluations, on CPU, on a
Ray head this bench starts (4 logical CPUs, so any version of the job gets CPUs for Ray Data). From
rank 0's progress file: the longest gap between two consecutive step ends (and its step), the
longest at an epoch boundary, the first and the longest later evaluation, the median gap (a plain
step), and the time from the worker's start to its first step end.

`--job-dir` runs another checkout of the job (e.g. the code before a change) for a before/after
figure; the run length is given in steps (--max-steps) so that older versions without --epochs run it.

Usage:  python bench/data_gaps.py [--job-dir /path/to/jobs/fsdp_ray]   (prints one JSON line last)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
JOB_DIR = BENCH.parent / "jobs" / "fsdp_ray"
sys.path.insert(0, str(JOB_DIR))
from lm_hooks import latest_per_rank  # noqa: E402 - the job's own hook readers
from recovery import RAY_AUTH, start_head  # noqa: E402 - one way to start a bench's Ray head

WORDS = ("the", "a", "model", "ray", "train", "shard", "step", "token", "loss", "batch", "node", "gpu", "cpu")
WORKERS, BATCH = 2, 8


def write_inputs(work: Path, n_train: int, n_eval: int) -> tuple[Path, Path, Path]:
    """A word-level tokenizer and tiny BERT directory, and CoLA-shaped train/validation JSONL."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import BertConfig, PreTrainedTokenizerFast  # noqa: PLC0415

    model_dir = work / "bert"
    model_dir.mkdir(parents=True)
    (work / "words.txt").write_text(" ".join(WORDS))
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(work / "words.txt")], trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(model_dir)
    BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=64).save_pretrained(model_dir)  # fmt: skip
    files = []
    for name, n in (("train", n_train), ("validation", n_eval)):
        rows = []
        for i in range(n):
            words = [WORDS[(i * 5 + j * 3) % len(WORDS)] for j in range(3 + i % 9)]
            rows.append(json.dumps({"sentence": " ".join(words), "label": int("gpu" in words)}))
        files.append(work / f"{name}.jsonl")
        files[-1].write_text("\n".join(rows) + "\n")
    return model_dir, files[0], files[1]


def gaps(progress: dict[str, Any], per_epoch: int, eval_every: int) -> dict[str, float]:
    """Gap at step k (k >= 2): end of step k-1 to end of step k. It holds step k's data wait (an epoch
    starts at k when k-1 is a multiple of per_epoch) and step k's evaluation (k a multiple of
    eval_every: the job evaluates after the step, before it records the step's end)."""
    ends, start = progress["step_ends_at"], progress["start_step"]
    by_step = {start + i + 1: ends[i] - ends[i - 1] for i in range(1, len(ends))}
    boundary = [g for k, g in by_step.items() if (k - 1) % per_epoch == 0]
    evals = [g for k, g in by_step.items() if k % eval_every == 0]
    worst = max(by_step, key=by_step.__getitem__)
    return {
        "max_gap_s": by_step[worst],
        "max_gap_step": worst,
        "max_epoch_boundary_gap_s": max(boundary, default=0.0),
        "first_eval_gap_s": evals[0] if evals else 0.0,
        "max_later_eval_gap_s": max(evals[1:], default=0.0),
        "median_gap_s": statistics.median(by_step.values()),
        "first_step_after_start_s": ends[0] - progress["started_at"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--job-dir", type=Path, default=JOB_DIR, help="the job checkout to run")
    p.add_argument("--train-rows", type=int, default=320, help="CoLA-shaped rows (20 steps per epoch)")
    p.add_argument("--eval-rows", type=int, default=103)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=15)
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    per_epoch = args.train_rows // WORKERS // BATCH
    steps = args.epochs * per_epoch
    with tempfile.TemporaryDirectory(prefix="fsdp-gaps-") as tmp:
        work = Path(tmp)
        model, train, validation = write_inputs(work, args.train_rows, args.eval_rows)
        head, address = start_head(work)
        try:
            cmd = [sys.executable, "train.py", "--gpus-per-worker", "0", "--num-workers", str(WORKERS),
                   "--batch-size", str(BATCH), "--seq-len", "16", "--model", str(model), "--init", "random",
                   "--task", "classification", "--dataset", str(train), "--eval-data", str(validation),
                   "--text-field", "sentence", "--max-steps", str(steps), "--checkpoint-every", str(steps),
                   "--eval-every", str(args.eval_every), "--no-export", "--run-name", "gaps",
                   "--storage-path", str(work / "results"),
                   "--progress-dir", str(work / "progress")]  # fmt: skip
            env = {**os.environ, "RAY_ADDRESS": address, "RAY_USAGE_STATS_ENABLED": "0", **RAY_AUTH,
                   "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}  # fmt: skip
            with (work / "run.log").open("wb") as log:
                done = subprocess.run(cmd, cwd=args.job_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=args.timeout, check=False)  # fmt: skip
            if done.returncode != 0:
                sys.exit(f"the run failed ({done.returncode}):\n{(work / 'run.log').read_text()[-3000:]}")
            result = gaps(latest_per_rank(work / "progress")[0], per_epoch, args.eval_every)
        finally:
            os.killpg(head.pid, 9)
            head.wait(timeout=60)
    print(
        f"job: {args.job_dir}; {args.epochs} epochs x {per_epoch} steps, evaluation every {args.eval_every}"
    )
    for key, value in result.items():
        print(f"{key:28s} {value:9d}" if key == "max_gap_step" else f"{key:28s} {value * 1000:9.1f} ms")
    print(json.dumps({"job_dir": str(args.job_dir), "steps": steps, "steps_per_epoch": per_epoch, **result}))


if __name__ == "__main__":
    main()
