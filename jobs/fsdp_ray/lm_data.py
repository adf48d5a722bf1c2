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
import math
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
    """Once per process (Ray Data reuses its worker processes across tasks), set up for classification.

    Decoder tokenizers (GPT-2, Llama, Qwen, Mistral) have no pad token: EOS pads, as Hugging Face's own
    fine-tuning examples do. Padding goes on the right, and the model's `pad_token_id` is set to the
    same id (lm_model.create), so `*ForSequenceClassification` of a decoder pools from the rightmost
    non-pad token, the last real one; encoders (BERT) pool from the first token either way.
    """
    from transformers import AutoTokenizer  # noqa: PLC0415 - only the Ray Data path needs it

    tok = AutoTokenizer.from_pretrained(name)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def pad_token_id(name: str) -> int:
    """The id classification pads with: the tokenizer's pad token, else its EOS (see load_tokenizer)."""
    pad = load_tokenizer(name).pad_token_id
    if pad is None:
        raise ValueError(f"tokenizer {name} has neither a pad nor an EOS token to pad classification rows")
    return int(pad)


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


def build(spec: DataSpec, *, task: str, seq_len: int) -> dict[str, Any]:
    """{"train": Dataset, "validation": Dataset (if any)}, tokenized lazily by Ray Data tasks.

    The validation set is kept whole: every row is evaluated exactly once (EvalSet).
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
    return {
        name: ds.map_batches(
            fn, batch_format="numpy", fn_kwargs={"tokenizer": spec.tokenizer, "seq_len": seq_len, **kwargs}
        )
        for name, ds in raw.items()
    }


def train_rows(spec: DataSpec, *, task: str, datasets: dict[str, Any]) -> int:
    """Rows one epoch trains on. Classification tokenizes one row per input row, so the raw file is
    counted (no tokenizer loaded); causal LM packing changes the count, so the packed set is counted
    (the pipeline runs once on the driver for that)."""
    if task == "classification":
        return read(spec.source, config_name=spec.config_name, split=spec.train_split).count()
    return datasets["train"].count()


def steps_per_epoch(rows: int, *, workers: int, batch_size: int) -> int:
    """Optimizer steps in one pass: Ray Train's equal split gives each worker rows // workers rows,
    of which the full batches are trained on (ShardStream drops the partial last one)."""
    return rows // workers // batch_size


# --- Ray Data: consuming a shard (workers) ------------------------------------------------------


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Host tensors to the rank's device; pinned host memory makes the copy asynchronous on GPU."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=v.is_pinned()) for k, v in batch.items()}


def host_batch(columns: dict[str, np.ndarray], pin: bool) -> dict[str, torch.Tensor]:
    out = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in columns.items()}
    return {k: v.pin_memory() for k, v in out.items()} if pin else out


class ShardStream:
    """Endless batches from a dataset shard, epoch after epoch, tracking (epoch, batch in epoch).

    No new pipeline per epoch when the shard fits: the first pass keeps its batches in host memory
    (pinned on GPU) while their size stays within `cache_bytes`, and every later epoch replays them
    in the same order, with no gap at the boundary. A shard larger than that is streamed again by
    Ray Data each epoch (the only way Ray Train's split can hand out more than memory holds).

    Resume runs the first pass from its start and skips the batches already trained on, on the host
    (no device copy); Ray Data's split may deal rows to ranks differently on a re-read, so a rank may
    see, within that epoch, rows another rank had before the restart (see README).
    """

    def __init__(
        self, shard: Any, batch_size: int, device: torch.device, *, epoch: int = 0, index: int = 0,
        cache_bytes: int = 1 << 30,
    ) -> None:  # fmt: skip
        self.shard, self.batch_size, self.device = shard, batch_size, device
        self.epoch, self.index = epoch, index
        self.cache_bytes = cache_bytes
        self.cache: list[dict[str, torch.Tensor]] | None = None  # complete first pass, once read
        self.passes = 0  # Ray Data passes started by this process (tests and bench read it)
        self._it = self._pass()
        for _ in range(index):
            next(self._it)

    def _pass(self) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of host batches: replayed from the cache, or read by Ray Data (filling it)."""
        if self.cache is not None:
            yield from self.cache
            return
        self.passes += 1
        kept: list[dict[str, torch.Tensor]] | None = []
        size = 0
        pin = self.device.type == "cuda"
        reader = self.shard.iter_batches(batch_size=self.batch_size, drop_last=True, batch_format="numpy")
        for columns in reader:
            batch = host_batch(columns, pin)
            if kept is not None:
                size += sum(v.numel() * v.element_size() for v in batch.values())
                kept = [*kept, batch] if size <= self.cache_bytes else None
            yield batch
        if kept:
            self.cache = kept

    def next(self) -> dict[str, torch.Tensor]:
        try:
            batch = next(self._it)
        except StopIteration:
            if self.index == 0:
                raise ValueError("the training data gives no full batch per worker") from None
            self.epoch, self.index = self.epoch + 1, 0
            self._it = self._pass()
            return self.next()
        self.index += 1
        return to_device(batch, self.device)

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.index}


class EvalSet:
    """The validation rows, read once per run, each evaluated exactly once across ranks.

    Every rank reads the whole (unsplit) validation set once, before the first step, in Ray Data's
    preserved order, and keeps rows rank, rank + world, ...: no row dropped, none twice. Ranks hold at
    most one row more than another, yet each forward is a collective under FSDP, so all run the same
    number of batches; the short ones are filled with copies of a real row whose weight is 0 (`valid`
    marks the real rows).
    """

    def __init__(self, columns: dict[str, np.ndarray], *, rank: int, world: int, batch_size: int) -> None:
        self.total = len(next(iter(columns.values()))) if columns else 0
        if self.total == 0:
            raise ValueError("the validation set is empty")
        self.batch_size = batch_size
        self.mine = {k: v[rank::world] for k, v in columns.items()}
        self.filler = {k: v[:1] for k, v in columns.items()}
        most = math.ceil(self.total / world)  # rows of the fullest rank
        self.n_batches = math.ceil(most / batch_size)

    @classmethod
    def read(cls, shard: Any, *, rank: int, world: int, batch_size: int) -> EvalSet:
        parts: dict[str, list[np.ndarray]] = {}
        for batch in shard.iter_batches(batch_size=1024, batch_format="numpy"):
            for k, v in batch.items():
                parts.setdefault(k, []).append(np.asarray(v))
        columns = {k: np.concatenate(v) for k, v in parts.items()}
        return cls(columns, rank=rank, world=world, batch_size=batch_size)

    def batches(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """(batch, valid) pairs, n_batches of them on every rank; valid is 1 for real rows, 0 for fill."""
        for i in range(self.n_batches):
            rows = {k: v[i * self.batch_size : (i + 1) * self.batch_size] for k, v in self.mine.items()}
            real = len(next(iter(rows.values())))
            if real < self.batch_size:
                fill = self.batch_size - real
                rows = {k: np.concatenate([v, np.repeat(self.filler[k], fill, 0)]) for k, v in rows.items()}
            valid = torch.zeros(self.batch_size, dtype=torch.bool)
            valid[:real] = True
            yield host_batch(rows, pin=False), valid
