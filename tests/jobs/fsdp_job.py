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

from lm_hooks import latest_per_rank, progress, registered_checkpoint  # noqa: F401 - re-exported for tests

REPO = Path(__file__).resolve().parents[2]
JOB_DIR = REPO / "jobs" / "fsdp_ray"
VENV_BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 300
# Token auth on, with a token of this test session only: nothing read from or written to ~/.ray.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

# A model small enough that Ray start-up, not compute, dominates the test time on two cores.
TINY = [
    "--gpus-per-worker", "0", "--num-workers", "2", "--eval-every", "0", "--d-model", "32",
    "--n-layers", "2", "--n-heads", "2", "--vocab-size", "128", "--seq-len", "16", "--batch-size", "4",
    "--lr", "3e-3",
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
    """The one JSON object line train.py prints; fails if there is not exactly one.

    The tests log stdout and stderr to one file, where a Ray Data progress bar from a worker (no
    newline, cursor escapes) can precede the summary on its line: it is read from its `{"run_name"`.
    """
    found = []
    for whole in output.splitlines():
        line = whole[whole.rfind('{"run_name"') :] if '{"run_name"' in whole else whole
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


WORDS = ("the", "a", "model", "ray", "train", "shard", "step", "token", "loss", "batch", "node", "gpu", "cpu")


def make_hf_inputs(directory: Path) -> tuple[Path, Path]:
    """A small text corpus and a word-level tokenizer trained on it, both on disk (no Hub access here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: PLC0415 - HF tests only
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    lines = [" ".join(WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(12)) for i in range(300)]
    text = directory / "corpus.txt"
    text.write_text("\n".join(lines) + "\n")
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(text)], trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"]))
    tokenizer_dir = directory / "tokenizer"
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", pad_token="[PAD]"
    ).save_pretrained(tokenizer_dir)
    return text, tokenizer_dir


def make_tiny_model(directory: Path, family: str, tokenizer_dir: Path, **overrides: Any) -> Path:
    """A model directory as the Hub serves one (config.json and tokenizer files), with no weights:
    the job builds it with --init random."""
    from transformers import AutoTokenizer, BertConfig, LlamaConfig  # noqa: PLC0415

    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    shape = {"vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64}  # fmt: skip
    if family == "bert":
        config: Any = BertConfig(**{**shape, **overrides})
    else:
        llama = {"num_key_value_heads": 2, "bos_token_id": None, "eos_token_id": None, "pad_token_id": 0}
        config = LlamaConfig(**{**shape, **llama, **overrides})
    config.save_pretrained(directory)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(directory)
    return directory


def make_labelled_dataset(directory: Path, n_train: int = 96, n_eval: int = 32) -> Path:
    """A CoLA-shaped DatasetDict (sentence, label) saved with save_to_disk; the label is learnable
    (1 when the sentence mentions "gpu")."""
    import datasets  # noqa: PLC0415

    def rows(n: int, offset: int) -> dict[str, list]:
        sentences = [
            " ".join(WORDS[(i * 5 + j * 3 + offset) % len(WORDS)] for j in range(6)) for i in range(n)
        ]
        return {"sentence": sentences, "label": [int("gpu" in s.split()) for s in sentences]}

    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows(n_train, 0)),
            "validation": datasets.Dataset.from_dict(rows(n_eval, 1)),
        }
    ).save_to_disk(directory)
    return directory


def hf_env(cache: Path) -> dict[str, str]:
    return {"HF_HOME": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
