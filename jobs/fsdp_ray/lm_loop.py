"""The per-worker training loop that Ray Train runs on every rank of each worker-group attempt."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lm_checkpoint
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from lm_data import BatchSource, SyntheticBatches, TokenBlockBatches
from lm_model import ModelConfig, TinyLM, lm_loss
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard


@ray.remote(num_cpus=0)
class AttemptLog:
    """Collects the start step of every worker-group attempt of one driver invocation.

    Owned by the driver, not by the workers, so it outlives worker restarts; rank 0 records into it
    before its first step, so an attempt that dies before its first report is still counted.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []

    def record(self, start_step: int) -> None:
        self._starts.append(start_step)

    def starts(self) -> list[int]:
        return list(self._starts)


@dataclass(frozen=True)
class LoopConfig:
    model: dict[str, int]
    max_steps: int
    checkpoint_every: int
    batch_size: int
    seq_len: int
    lr: float
    seed: int
    use_gpu: bool
    attempt_log: Any  # ActorHandle of AttemptLog
    tokens_ref: Any = None  # ObjectRef of the HF token stream, or None for synthetic data
    progress_dir: str | None = None  # tests and bench only: per-rank progress files


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    cfg = LoopConfig(**config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    model = build_model(ModelConfig(**cfg.model), cfg.seed, device, cfg.use_gpu)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    start_step, loss = restore(model, optimizer, cfg)
    if rank == 0:
        ray.get(cfg.attempt_log.record.remote(start_step))
    progress = Progress(cfg.progress_dir, rank, start_step)
    batches = make_batches(cfg)
    for step in range(start_step, cfg.max_steps):
        t0 = time.perf_counter()
        loss = train_step(model, optimizer, batches.batch(step, rank, world).to(device), world)
        step_time = time.perf_counter() - t0
        done = step + 1
        metrics = {
            "step": done,
            "start_step": start_step,
            "loss": loss,
            "step_time_s": step_time,
            "tokens_per_s": cfg.batch_size * cfg.seq_len * world / step_time,
        }
        t1 = time.perf_counter()
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            save_and_report(
                model=model, optimizer=optimizer, cfg=cfg, rank=rank, world=world, metrics=metrics
            )
            progress.update(done, step_time, checkpoint_s=time.perf_counter() - t1, checkpoint_step=done)
        else:
            ray.train.report(metrics)
            progress.update(done, step_time)
        if rank == 0:
            log(
                f"step {done}/{cfg.max_steps} loss={loss:.4f} tokens/s={metrics['tokens_per_s']:.0f} "
                f"step_time={step_time * 1000:.1f}ms"
            )
    return {"final_loss": loss, "steps_completed": max(start_step, cfg.max_steps)}


def log(line: str) -> None:
    """Writes to stdout directly: Ray Train's patched print() would log every line twice."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def build_model(cfg: ModelConfig, seed: int, device: torch.device, use_gpu: bool) -> nn.Module:
    """Same seed on every rank gives identical full weights, which fully_shard then slices per rank."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = TinyLM(cfg)
    # bf16 compute with fp32 gradient reduction on GPU; CPU stays fp32 (bf16 matmuls are slow on CPU).
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if use_gpu else None
    kwargs = {"mp_policy": mp} if mp else {}
    for block in model.blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: LoopConfig) -> tuple[int, float]:
    """Resumes from Ray Train's latest registered checkpoint, if any: (start step, loss at that step)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, float("nan")
    with checkpoint.as_directory() as directory:
        state = lm_checkpoint.load(directory, model, optimizer, expected_model=cfg.model)
    return int(state["step"]), float(state["loss"])


def make_batches(cfg: LoopConfig) -> BatchSource:
    if cfg.tokens_ref is None:
        return SyntheticBatches(cfg.batch_size, cfg.seq_len, cfg.model["vocab_size"], cfg.seed)
    return TokenBlockBatches(ray.get(cfg.tokens_ref), cfg.batch_size, cfg.seq_len, cfg.seed)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, rows: torch.Tensor, world: int) -> float:
    """One optimizer step; returns the loss averaged over ranks (gloo has no AVG, so SUM / world)."""
    loss = lm_loss(model(rows[:, :-1]), rows[:, 1:])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    total = loss.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.item() / world


def save_and_report(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: LoopConfig,
    rank: int,
    world: int,
    metrics: dict[str, Any],
) -> None:
    """Saves this rank's shard to a local temp dir; ray.train.report copies it into the run's storage."""
    directory = tempfile.mkdtemp(prefix="fsdp-lm-ckpt-")
    try:
        state = {"step": metrics["step"], "loss": metrics["loss"], "world_size": world, "model": cfg.model}
        lm_checkpoint.save(directory, model, optimizer, rank=rank, state=state)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Progress:
    """Test and bench hook: one JSON file per rank and process, rewritten atomically after each step."""

    def __init__(self, directory: str | None, rank: int, start_step: int) -> None:
        self.path = Path(directory) / f"rank{rank}-pid{os.getpid()}.json" if directory else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.data: dict[str, Any] = {
            "rank": rank,
            "pid": os.getpid(),
            "start_step": start_step,
            "step": start_step,
            "checkpoint_step": None,
            "started_at": now,
            "first_step_at": None,
            "updated_at": now,
            "step_times_s": [],
            "checkpoint_times_s": [],
        }
        self._write()

    def update(
        self,
        step: int,
        step_time: float,
        *,
        checkpoint_s: float | None = None,
        checkpoint_step: int | None = None,
    ) -> None:
        if self.path is None:
            return
        now = time.time()
        self.data["first_step_at"] = self.data["first_step_at"] or now
        self.data.update(step=step, updated_at=now)
        self.data["step_times_s"].append(step_time)
        if checkpoint_s is not None:
            self.data["checkpoint_times_s"].append(checkpoint_s)
            self.data["checkpoint_step"] = checkpoint_step
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)
