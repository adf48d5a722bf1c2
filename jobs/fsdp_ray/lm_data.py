"""Training and validation data: self-contained synthetic batches, or Ray Data streamed to the workers.

Synthetic (the offline default, causal LM only): batch `(step, rank)` is a pure function of
`(seed, step, rank)`, so a resumed run sees exactly the batches it would have seen without a crash.

Ray Data (`--dataset`): the driver builds a `ray.data.Dataset` from a Hugging Face dataset (Hub name,
or a directory written by `datasets.save_to_disk`), or from JSONL / Parquet files (e.g. on /fsx);
Ray Data tokenizes it (and, for causal LM, packs documents joined by EOS into `seq_len` blocks) in
its own tasks, and Ray Train streams an equal share to every worker (`get_dataset_shard`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SYNTHETIC = "synthetic"
HF_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what datasets.save_to_disk writes


@dataclass(frozen=True)
class DataSpec:
    source: str = SYNTHETIC  # "synthetic", a Hub dataset name, or a local path (file or directory)
    config_name: str | None = None  # Hub dataset config, e.g. "cola" of "nyu-mll/glue"
    train_split: str = "train"
    eval_split: str | None = None  # Hugging Face sources: the split to evaluate on
    eval_source: str | None = None  # file sources: a separate JSONL/Parquet path to evaluate on
    text_field: str = "text"
    label_field: str = "label"
    tokenizer: str | None = None  # Hub id or directory; the model's own by default


# --- synthetic ----------------------------------------------------------------------------------


def _rng(*key: int) -> np.random.Generator:
    """A generator keyed by integers; SeedSequence mixes them so nearby keys give unrelated streams."""
    return np.random.default_rng(np.random.SeedSequence(list(key)))


class SyntheticBatches:
    """Arithmetic sequences mod vocab (random start and stride per row): learnable, so the loss falls."""

    max_stride = 8

    def __init__(self, batch_size: int, seq_len: int, vocab_size: int, seed: int) -> None:
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.seed = seed

    def batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        # The world size is not part of the key: rank r's rows at step s are the same for any world size.
        rng = _rng(self.seed, step, rank)
        start = rng.integers(0, self.vocab_size, size=(self.batch_size, 1))
        stride = rng.integers(1, self.max_stride, size=(self.batch_size, 1))
        rows = (start + stride * np.arange(self.seq_len)) % self.vocab_size
        return {"input_ids": torch.from_numpy(rows.astype(np.int64))}


# --- Ray Data: building the datasets (driver) ---------------------------------------------------


def pack(documents: list[list[int]], seq_len: int, eos: int | None) -> np.ndarray:
    """Joins documents with EOS and cuts the stream into full `seq_len` blocks; drops the remainder."""
    stream = [t for doc in documents for t in ([*doc, eos] if eos is not None else doc)]
    n = len(stream) // seq_len
    return np.asarray(stream[: n * seq_len], dtype=np.int64).reshape(n, seq_len)


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Any:
    """Once per process: Ray Data reuses its worker processes across tasks."""
    from transformers import AutoTokenizer  # noqa: PLC0415 - only the Ray Data path needs it

    return AutoTokenizer.from_pretrained(name)


def tokenize_and_pack(batch: dict[str, np.ndarray], *, tokenizer: str, field: str, seq_len: int) -> dict:
    """Ray Data map_batches function for causal LM: text rows in, `seq_len` token blocks out."""
    tok = load_tokenizer(tokenizer)
    texts = [str(t) for t in batch[field] if t is not None and str(t).strip()]
    ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    return {"input_ids": pack(ids, seq_len, tok.eos_token_id)}


def tokenize_labelled(
    batch: dict[str, np.ndarray], *, tokenizer: str, field: str, label_field: str, seq_len: int
) -> dict:
    """Ray Data map_batches function for classification: padded or truncated to `seq_len`, with labels."""
    tok = load_tokenizer(tokenizer)
    enc = tok(
        [str(t) for t in batch[field]],
        padding="max_length",
        truncation=True,
        max_length=seq_len,
        return_tensors="np",
    )
    return {
        "input_ids": enc["input_ids"].astype(np.int64),
        "attention_mask": enc["attention_mask"].astype(np.int64),
        "labels": np.asarray(batch[label_field], dtype=np.int64),
    }


def read(source: str, *, config_name: str | None, split: str) -> Any:
    """A raw ray.data.Dataset from a Hub dataset, a save_to_disk directory, or JSONL/Parquet files."""
    import ray.data  # noqa: PLC0415

    path = Path(source)
    if path.exists():
        if path.is_dir() and any((path / m).is_file() for m in HF_SAVED_MARKERS):
            import datasets  # noqa: PLC0415

            saved = datasets.load_from_disk(str(path))
            return ray.data.from_huggingface(
                saved[split] if isinstance(saved, datasets.DatasetDict) else saved
            )
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        suffixes = {p.suffix for p in files}
        if suffixes <= {".parquet"} and files:
            return ray.data.read_parquet(str(path))
        if suffixes <= {".jsonl", ".json"} and files:
            return ray.data.read_json(str(path))
        raise ValueError(f"{source}: expected .jsonl/.json or .parquet files, found {sorted(suffixes)}")
    import datasets  # noqa: PLC0415

    return ray.data.from_huggingface(datasets.load_dataset(source, config_name, split=split))


def build(spec: DataSpec, *, task: str, seq_len: int, eval_rows: int) -> dict[str, Any]:
    """{"train": Dataset, "validation": Dataset (if any)}, tokenized lazily by Ray Data tasks.

    The validation set is cut to `eval_rows` rows here (0: all), so every rank evaluates its whole
    shard and no worker leaves a streaming split half read.
    """
    if spec.tokenizer is None:
        raise ValueError("a dataset needs a tokenizer: pass --model or --tokenizer")
    raw = {"train": read(spec.source, config_name=spec.config_name, split=spec.train_split)}
    if spec.eval_source:
        raw["validation"] = read(spec.eval_source, config_name=spec.config_name, split=spec.train_split)
    elif spec.eval_split:
        raw["validation"] = read(spec.source, config_name=spec.config_name, split=spec.eval_split)
    if task == "classification":
        fn: Any = tokenize_labelled
        kwargs = {"field": spec.text_field, "label_field": spec.label_field}
    else:
        fn, kwargs = tokenize_and_pack, {"field": spec.text_field}
    out = {
        name: ds.map_batches(
            fn, batch_format="numpy", fn_kwargs={"tokenizer": spec.tokenizer, "seq_len": seq_len, **kwargs}
        )
        for name, ds in raw.items()
    }
    if "validation" in out and eval_rows:
        out["validation"] = out["validation"].limit(eval_rows)
    return out


# --- Ray Data: consuming a shard (workers) ------------------------------------------------------


class ShardStream:
    """Endless batches from a dataset shard, epoch after epoch, tracking (epoch, batch in epoch).

    Resume re-reads the epoch from its start and discards the batches already trained on, so the
    step count per epoch is exact; Ray Data's split may deal rows to ranks differently on re-read,
    so a rank may see, within that epoch, rows another rank had before the restart (see README).
    """

    def __init__(self, shard: Any, batch_size: int, device: torch.device, epoch: int = 0, index: int = 0):
        self.shard, self.batch_size, self.device = shard, batch_size, device
        self.epoch, self.index = epoch, index
        self._it = self._epoch_iter(skip=index)

    def _epoch_iter(self, skip: int) -> Iterator[dict[str, torch.Tensor]]:
        it = iter(
            self.shard.iter_torch_batches(
                batch_size=self.batch_size, drop_last=True, dtypes=torch.int64, device=self.device
            )
        )
        for _ in range(skip):
            next(it)
        return it

    def next(self) -> dict[str, torch.Tensor]:
        try:
            batch = next(self._it)
        except StopIteration:
            if self.index == 0:
                raise ValueError("the training data gives no full batch per worker") from None
            self.epoch, self.index = self.epoch + 1, 0
            self._it = self._epoch_iter(skip=0)
            return self.next()
        self.index += 1
        return batch

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.index}


def eval_batches(shard: Any, batch_size: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The whole validation shard; equal shards and drop_last give every rank the same batch count,
    which FSDP needs (each forward is a collective)."""
    return iter(
        shard.iter_torch_batches(batch_size=batch_size, drop_last=True, dtypes=torch.int64, device=device)
    )
