"""Sharded checkpoints with torch.distributed.checkpoint (DCP), the resume check, and the final export.

A checkpoint directory holds DCP's `.metadata`, one `__<rank>_0.distcp` per rank (model and AdamW
shards) and `train_state.json` (step, loss, LR schedule, data position, and the resume key: what a
run must share with the checkpoint to load it). `validate` re-checks completeness on load as a second
line of defence behind Ray Train, which only registers a checkpoint after every rank reported it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.optim import Optimizer

STATE_FILE = "train_state.json"
DCP_METADATA = ".metadata"
EXPORT_DIR = "hf_model"  # the consolidated Hugging Face checkpoint, next to Ray Train's checkpoints
MODES = ("async", "sync")


class CheckpointError(RuntimeError):
    pass


class ResumeMismatchError(CheckpointError):
    """The checkpoint belongs to a different model or flags: retrying cannot help (train.py fails fast)."""


class Saver:
    """DCP saves, either blocking (`sync`) or `async_save` (stage to CPU, write in a background thread).

    One save is in flight at a time: a new save first waits for the previous one, so staging memory
    stays bounded; that wait counts in the stall this returns. Async saves stage through one stager
    for the whole run: DCP's StateDictStager keeps the host copy of each shard's storage and refills
    it at the next save (the shards keep their storages across steps), so staging allocates once;
    on GPU that memory is pinned, which makes the device-to-host copy run at full bandwidth.
    """

    def __init__(self, mode: str, group: Any = None, *, pin: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"checkpoint mode {mode!r}, expected one of {MODES}")
        self.mode, self.group = mode, group  # group: a gloo process group for DCP's own collectives
        self.pending: Future | None = None
        self.stager: DefaultStager | None = None
        if mode == "async":
            self.stager = DefaultStager(
                StagingOptions(use_pinned_memory=pin, use_shared_memory=False, use_async_staging=False,
                               use_non_blocking_copy=False)
            )  # fmt: skip

    def save(self, directory: str, model: nn.Module, optimizer: Optimizer) -> float:
        """Collective. Returns the seconds the training loop was blocked."""
        t0 = time.perf_counter()
        self.wait()
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        if self.mode == "async":
            self.pending = dcp.async_save(
                state, checkpoint_id=directory, process_group=self.group, async_stager=self.stager
            )
        else:
            dcp.save(state, checkpoint_id=directory, process_group=self.group)
        return time.perf_counter() - t0

    def wait(self) -> None:
        """Blocks until the save in flight, if any, has written every file (re-raises its error)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self) -> None:
        """Waits for the last save and frees the staging buffers (DCP asks an owner to close them)."""
        self.wait()
        if self.stager is not None:
            self.stager.close()
            self.stager = None


def write_state(directory: str, state: dict[str, Any]) -> None:
    """Rank 0 only, after the DCP files are complete: its presence marks the checkpoint complete."""
    path = Path(directory) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(tmp, path)


def check_resume_key(saved: dict[str, Any], expected: dict[str, Any], directory: str) -> None:
    """Raises ResumeMismatchError naming the first differences between a checkpoint's key and this run's."""
    diffs = []
    for key in sorted(set(saved) | set(expected)):
        if key == "shapes":
            a, b = saved.get(key, {}), expected.get(key, {})
            names = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
            diffs += [f"{n}: saved {a.get(n)}, now {b.get(n)}" for n in names[:3]]
            if len(names) > 3:
                diffs.append(f"... {len(names)} parameters differ")
        elif saved.get(key) != expected.get(key):
            diffs.append(f"{key}: saved {saved.get(key)!r}, now {expected.get(key)!r}")
    if diffs:
        raise ResumeMismatchError(
            f"checkpoint {directory} does not match this run ({'; '.join(diffs)}); "
            "use a new --run-name, or the flags the run was started with"
        )


def load(
    directory: str, model: nn.Module, optimizer: Optimizer, *, resume_key: dict, group: Any = None
) -> dict[str, Any]:
    """Collective: checks the resume key, restores model and optimizer shards, returns the train state."""
    state = validate(directory)
    check_resume_key(state["resume_key"], resume_key, directory)
    # get_state_dict gives the sharded (DTensor) layout to load into; DCP reshards if world size changed.
    model_sd, optim_sd = get_state_dict(model, optimizer)
    loaded = {"model": model_sd, "optim": optim_sd}
    dcp.load(loaded, checkpoint_id=directory, process_group=group)
    set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    return state


def validate(directory: str) -> dict[str, Any]:
    """Returns the train state if the checkpoint holds DCP metadata, the state file and every rank's shard."""
    path = Path(directory)
    missing = [name for name in (DCP_METADATA, STATE_FILE) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"incomplete checkpoint {directory}: missing {missing}")
    state = json.loads((path / STATE_FILE).read_text())
    shards = {p.name for p in path.glob("*.distcp")}
    expected = {f"__{r}_0.distcp" for r in range(state["world_size"])}
    if not expected <= shards:
        raise CheckpointError(
            f"incomplete checkpoint {directory}: missing shards {sorted(expected - shards)}"
        )
    return state


def export_hf(
    model: nn.Module, *, architecture: str, tokenizer: str | None, rank: int, write: Any,
    dtype: torch.dtype = torch.float32,
) -> None:  # fmt: skip
    """Collective: gathers the full weights to rank 0's CPU, which saves a Hugging Face model directory.

    safetensors weights in `dtype` (the source checkpoint's: a bf16 model is exported bf16, not as the
    fp32 master weights), config.json (with the unwrapped class name: FSDP2 renames the class, and the
    dtype) and the tokenizer, written to a local temp dir and handed to `write(local_dir)`.
    """
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return
    full = {k: v.to(dtype) if v.is_floating_point() else v for k, v in full.items()}
    with tempfile.TemporaryDirectory(prefix="hf-export-") as out:
        model.save_pretrained(out, state_dict=full, safe_serialization=True)
        model.config.architectures = [architecture]
        model.config.dtype = dtype  # after save_pretrained, which writes the live (fp32) model's dtype
        model.config.save_pretrained(out)
        if tokenizer:
            from transformers import AutoTokenizer  # noqa: PLC0415

            AutoTokenizer.from_pretrained(tokenizer).save_pretrained(out)
        write(out)
