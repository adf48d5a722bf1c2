"""Token batches that depend only on (seed, step, rank): a resumed run sees exactly the batches it missed.

Each batch holds `batch_size` rows of `seq_len + 1` tokens; inputs are row[:-1], targets row[1:].
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class BatchSource(Protocol):
    def batch(self, step: int, rank: int, world_size: int) -> torch.Tensor: ...


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

    def batch(self, step: int, rank: int, world_size: int) -> torch.Tensor:
        # world_size is not part of the key: rank r's rows at step s are the same for any world size.
        rng = _rng(self.seed, step, rank)
        start = rng.integers(0, self.vocab_size, size=(self.batch_size, 1))
        stride = rng.integers(1, self.max_stride, size=(self.batch_size, 1))
        rows = (start + stride * np.arange(self.seq_len + 1)) % self.vocab_size
        return torch.from_numpy(rows.astype(np.int64))


class TokenBlockBatches:
    """Fixed-length blocks cut from one token stream, visited in a seeded order per epoch.

    Global row i of step s is block perm_e[(s * world + rank) * batch + j mod n], so ranks never overlap
    within a step and the order is a pure function of the step.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int) -> None:
        n_blocks = len(tokens) // (seq_len + 1)
        if n_blocks < 1:
            raise ValueError(f"dataset has {len(tokens)} tokens, fewer than one block of {seq_len + 1}")
        self.blocks = torch.from_numpy(
            tokens[: n_blocks * (seq_len + 1)].astype(np.int64).reshape(n_blocks, seq_len + 1)
        )
        self.batch_size = batch_size
        self.seed = seed

    def batch(self, step: int, rank: int, world_size: int) -> torch.Tensor:
        n = len(self.blocks)
        first = (step * world_size + rank) * self.batch_size
        rows = []
        for i in range(first, first + self.batch_size):
            epoch, pos = divmod(i, n)
            rows.append(self._permutation(epoch)[pos])
        return self.blocks[torch.tensor(rows)]

    def _permutation(self, epoch: int) -> np.ndarray:
        return _rng(self.seed, epoch).permutation(len(self.blocks))


def load_hf_tokens(
    dataset: str,
    tokenizer_name: str,
    *,
    data_files: list[str] | None = None,
    config_name: str | None = None,
    split: str = "train",
    text_field: str = "text",
) -> tuple[np.ndarray, int]:
    """Tokenize a whole dataset into one stream (documents joined by EOS) and return it with the vocab size.

    Runs once in the driver; the stream goes to workers through the object store, so workers need no
    network access and the dataset is downloaded once, not once per worker.
    """
    import datasets  # noqa: PLC0415 - optional dependency, only for the HF path
    from transformers import AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    ds = datasets.load_dataset(dataset, config_name, data_files=data_files, split=split)
    if text_field not in ds.column_names:
        raise ValueError(f"dataset has no field {text_field!r}; fields: {ds.column_names}")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for rows in ds.iter(batch_size=1000):
        texts = [t for t in rows[text_field] if t and t.strip()]
        for doc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            ids.extend(doc + eos)
    return np.asarray(ids, dtype=np.int32), len(tokenizer)
