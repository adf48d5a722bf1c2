"""The per-worker training loop: Ray Train runs it on every rank of each worker-group attempt.

The same loop also runs under plain `torchrun` (`train.py --launcher torchrun`, synthetic data, no
checkpoints): `bench/overhead.py` compares the two, so the loop talks to its launcher only through a
`Runtime` (rank, device, restore, datasets, checkpoint reporting, export).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import lm_checkpoint
import lm_data
import lm_hooks
import lm_metrics
import lm_model
import numpy as np
import ray
import torch
import torch.distributed as dist
from lm_hooks import Progress
from torch import nn

# Dense bf16 tensor-core peak per GPU, FLOP/s, from NVIDIA's data sheets (which print the 2:4
# sparsity figure; dense is half of it): A100 312 T, H100 SXM / H200 989 T, H100 PCIe 756 T,
# L40S 362 T, L4 121 T, A10 125 T, B200 2250 T. The first name found in the device name wins.
GPU_PEAK_FLOPS = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("B200", 2250e12),
)
NCCL_ENV = ("NCCL_NET", "NCCL_NET_PLUGIN", "FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "NCCL_SOCKET_IFNAME")


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
    model: lm_model.ModelSpec
    data: lm_data.DataSpec
    max_steps: int
    checkpoint_every: int
    eval_every: int
    eval_batches: int  # synthetic validation batches per rank (Ray Data: the whole validation set)
    batch_size: int  # sequences per worker per step
    seq_len: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float
    weight_decay: float
    max_grad_norm: float  # 0 disables clipping
    seed: int
    use_gpu: bool
    checkpoint_mode: str  # "async" or "sync"
    log_every_s: float
    export: bool  # consolidated Hugging Face model at the end
    cache_train_mb: int = 1024  # per worker: a training shard up to this size is replayed from memory
    attempt_log: Any = None  # ActorHandle of AttemptLog (Ray only)
    progress_dir: str | None = None  # tests and bench only (lm_hooks)
    run_progress: Any = None  # ActorHandle of failure_policy.RunProgress (Ray only)
    fail_at_step: int | None = None  # tests only: every rank raises before this step (lm_hooks)

    def resume_key(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        """The model fingerprint plus the flags a checkpoint's data position and weights depend on."""
        d = self.data
        data = [d.source, d.config_name, d.train_split, d.text_field, d.label_field, d.tokenizer]
        return {**fingerprint, "seq_len": self.seq_len, "data": data, "optimizer": "AdamW"}


@dataclass
class Runtime:
    """What the loop needs from its launcher; see ray_runtime and torchrun_runtime."""

    rank: int
    world: int
    device: torch.device
    restore_dir: Callable[[], contextlib.AbstractContextManager[str | None]]
    dataset: Callable[[str], Any]  # shard by name, or None
    save: Callable[..., float] | None  # checkpoint and report; None: no checkpoints (torchrun)
    export_to: Callable[[str], None] | None
    # Tokens/s and MFU to the metrics store (Ray's metrics port, lm_metrics); None: not under Ray.
    publish: Callable[[float, float], None] | None = None


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point: the config crosses as one typed LoopConfig."""
    return train(config["loop"], ray_runtime(config["loop"]))


def train(cfg: LoopConfig, rt: Runtime) -> dict[str, Any]:
    # A separate gloo group for DCP: async saves run collectives from a background thread, which
    # must not interleave with the training group's, and async_save needs a CPU backend under NCCL.
    ckpt_group = dist.new_group(backend="gloo")
    base = lm_model.create(cfg.model, cfg.seed)
    architecture = type(base).__name__
    resume_key = cfg.resume_key(lm_model.fingerprint(base, cfg.model.task))
    flops_token = lm_model.flops_per_token(base, cfg.seq_len)
    model = lm_model.shard(
        base, use_gpu=cfg.use_gpu, activation_checkpointing=cfg.model.activation_checkpointing
    )
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    state = restore(
        rt, model=model, optimizer=optimizer, scheduler=scheduler, resume_key=resume_key, group=ckpt_group
    )
    start, loss = state["step"], state["loss"]
    if rt.rank == 0:
        log_startup(cfg, rt, architecture, model, flops_token)
        if cfg.attempt_log is not None:
            ray.get(cfg.attempt_log.record.remote(start))
    progress = Progress(cfg.progress_dir, rt.rank, start)
    batches = BatchIterator(cfg, rt, start, state.get("data"))
    meter = Meter(cfg, rt, flops_token, start)
    saver = lm_checkpoint.Saver(cfg.checkpoint_mode, ckpt_group, pin=cfg.use_gpu)
    evaluation = Evaluation(cfg, rt)
    if cfg.eval_every:
        evaluation.batches()  # reads the validation set now, not as a stall at the first evaluation
    last_eval: dict[str, float] = {}
    for step in range(start, cfg.max_steps):
        lm_hooks.fail_at(cfg.fail_at_step, step + 1)
        t0 = time.perf_counter()
        lr = scheduler.get_last_lr()[0]  # the LR this step applies (the scheduler steps inside)
        seed_step(cfg.seed, step, rt.rank)
        loss, grad_norm, tokens = train_step(model, optimizer, scheduler, next(batches), cfg.max_grad_norm)
        step_time, done = time.perf_counter() - t0, step + 1
        metrics = {"step": done, "start_step": start, "loss": loss, "lr": lr, "grad_norm": grad_norm}
        meter.count_tokens(tokens)
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.max_steps):
            last_eval = evaluation.run(model)
            metrics.update(last_eval)
        stall = None
        if rt.save and (done % cfg.checkpoint_every == 0 or done == cfg.max_steps):
            train_state = {"step": done, "loss": loss, "world_size": rt.world, "resume_key": resume_key,
                           "scheduler": scheduler.state_dict(), "data": batches.position()}  # fmt: skip
            stall = rt.save(saver, model, optimizer, train_state, metrics)
            meter.checkpoint(done, stall)
        progress.update(done, step_time, stall_s=stall)
        if rt.rank == 0 and cfg.run_progress is not None:
            cfg.run_progress.reached.remote(done)  # fire and forget: the failure policy's progress mark
        meter.step(done, loss, metrics)
    saver.close()
    if rt.rank == 0 and batches.stream is not None:
        stream = batches.stream  # epochs this process reached: a resumed one starts in the saved epoch
        log(f"training data: {stream.passes} Ray Data pass(es), up to epoch {stream.epoch + 1}")
    if cfg.export and rt.export_to is not None:
        lm_checkpoint.export_hf(model, architecture=architecture, tokenizer=cfg.data.tokenizer, rank=rt.rank,
                                write=rt.export_to, dtype=lm_model.source_dtype(cfg.model))  # fmt: skip
    return {"final_loss": loss, "steps_completed": max(start, cfg.max_steps), "eval": last_eval}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices only; biases and norm weights (1-D) are not decayed, as in
    BERT's and Hugging Face Trainer's recipes (decaying a LayerNorm gain towards 0 only hurts)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seeds dropout (and any other torch randomness) from (seed, step, rank) before each step: a
    resumed run draws the same masks as an uninterrupted one, with no RNG state in the checkpoint, and
    for any world size the state file was written with."""
    torch.manual_seed(int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0]))


def lr_lambda(cfg: LoopConfig) -> Callable[[int], float]:
    """Linear warm-up to --lr over --warmup-steps, then cosine decay to min_lr_ratio * lr at max_steps."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def log(line: str) -> None:
    """Writes to stdout directly: Ray Train's patched print() would log every line twice."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def log_startup(
    cfg: LoopConfig, rt: Runtime, architecture: str, model: nn.Module, flops_token: float
) -> None:
    params = sum(p.numel() for p in model.parameters())  # DTensor numel is the global size
    log(
        f"model {architecture} ({params / 1e6:.1f}M parameters, {flops_token / 1e6:.1f} MFLOP/token), "
        f"{rt.world} ranks on {rt.device.type}, checkpoints {cfg.checkpoint_mode}"
    )
    if cfg.use_gpu:
        log(nccl_line(dict(os.environ), torch.cuda.nccl.version()))


def nccl_line(env: dict[str, str], version: tuple[int, ...]) -> str:
    """Best effort: which network NCCL will use, from its settings (NCCL itself only says so with
    NCCL_DEBUG=INFO, as "NET/OFI Selected provider is efa" or "NET/Socket")."""
    settings = " ".join(f"{k}={env[k]}" for k in NCCL_ENV if k in env) or "no NCCL/libfabric settings"
    guess = "EFA via aws-ofi-nccl" if env.get("FI_PROVIDER") == "efa" else "NCCL's choice (socket or IB)"
    return f"NCCL {'.'.join(map(str, version))}: {settings}; expected transport: {guess}"


def restore(
    rt: Runtime, *, model: nn.Module, optimizer: Any, scheduler: Any, resume_key: dict, group: Any
) -> dict[str, Any]:
    """Resumes from the launcher's latest checkpoint, if any; ResumeMismatchError on a mismatch."""
    with rt.restore_dir() as directory:
        if directory is None:
            return {"step": 0, "loss": float("nan")}
        state = lm_checkpoint.load(directory, model, optimizer, resume_key=resume_key, group=group)
    scheduler.load_state_dict(state["scheduler"])
    return state


class BatchIterator:
    """Training batches from the synthetic source or the Ray Data shard, with a resumable position."""

    def __init__(self, cfg: LoopConfig, rt: Runtime, start: int, saved: dict[str, int] | None) -> None:
        self.rt, self.step = rt, start
        shard = rt.dataset("train")
        if shard is None:
            self.synthetic = lm_data.SyntheticBatches(
                cfg.batch_size, cfg.seq_len, cfg.model.vocab_size, cfg.seed
            )
            self.stream = None
        else:
            # The saved position counts samples, so a resume with another --num-workers skips the same data.
            epoch, samples = (saved["epoch"], saved["samples"]) if saved else (0, 0)
            self.per_step = cfg.batch_size * rt.world
            self.stream = lm_data.ShardStream(
                shard, cfg.batch_size, rt.device, epoch=epoch, index=samples // self.per_step,
                cache_bytes=cfg.cache_train_mb << 20,
            )  # fmt: skip

    def __next__(self) -> dict[str, torch.Tensor]:
        self.step += 1
        if self.stream is None:
            return {
                k: v.to(self.rt.device) for k, v in self.synthetic.batch(self.step - 1, self.rt.rank).items()
            }
        return self.stream.next()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def position(self) -> dict[str, int] | None:
        if self.stream is None:
            return None  # synthetic batches are a function of the step
        return {"epoch": self.stream.epoch, "samples": self.stream.index * self.per_step}


def forward_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
    """Causal LM: labels are the inputs (the model shifts them); classification: the batch's labels."""
    labels = batch.get("labels", batch["input_ids"])
    return model(**{k: v for k, v in batch.items() if k != "labels"}, labels=labels)


def train_step(
    model: nn.Module, optimizer: Any, scheduler: Any, batch: dict, max_grad_norm: float
) -> tuple[float, float, float]:
    """One optimizer step; returns the loss averaged over ranks (gloo has no AVG), the grad norm and
    the real (non-padding) tokens of all ranks, read back to the host in one sync."""
    loss = forward_loss(model, batch).loss
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm or float("inf"))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    mask = batch.get("attention_mask")
    tokens = mask.sum() if mask is not None else torch.tensor(batch["input_ids"].numel(), device=loss.device)
    world = dist.get_world_size()
    # The norm is the same on every rank: pre-multiplied by the world size, the sum returns it.
    totals = torch.stack([loss.detach().float(), norm.detach().float() * world, tokens.float()])
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    loss_sum, norm_sum, token_sum = totals.tolist()
    return loss_sum / world, norm_sum / world, token_sum


class Evaluation:
    """The validation set of the run: read once, before the first step, kept for every evaluation
    (a broken validation set fails the run before any training, not at its first evaluation)."""

    def __init__(self, cfg: LoopConfig, rt: Runtime) -> None:
        self.cfg, self.rt = cfg, rt
        self.eval_set: lm_data.EvalSet | None = None

    def batches(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]] | None:
        cfg, rt = self.cfg, self.rt
        if cfg.data.source == lm_data.SYNTHETIC:
            source = lm_data.SyntheticBatches(cfg.batch_size, cfg.seq_len, cfg.model.vocab_size, cfg.seed + 1)
            valid = torch.ones(cfg.batch_size, dtype=torch.bool)
            return ((source.batch(i, rt.rank), valid) for i in range(cfg.eval_batches))
        if self.eval_set is None:
            shard = rt.dataset("validation")
            if shard is None:
                return None
            self.eval_set = lm_data.EvalSet.read(
                shard, rank=rt.rank, world=rt.world, batch_size=cfg.batch_size
            )
        return self.eval_set.batches()

    def run(self, model: nn.Module) -> dict[str, float]:
        batches = self.batches()
        if batches is None:
            return {}
        labels = self.cfg.model.num_labels if self.cfg.model.task == lm_model.CLASSIFICATION else 0
        return evaluate(model, batches, self.rt.device, labels)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Any, device: torch.device, num_labels: int) -> dict[str, float]:
    """Loss over every real validation row of all ranks; for classification (num_labels > 0) also
    accuracy and Matthews correlation (GLUE CoLA's metric) from the summed confusion matrix.

    Loss per row is computed from the logits, so fill rows (valid 0) weigh nothing; causal LM loss is
    the mean over predicted tokens, as the model's own loss. One all-reduce and one host sync per call.
    """
    model.eval()
    sums = torch.zeros(3 + num_labels * num_labels, dtype=torch.float64, device=device)  # loss, n, rows, conf
    for host_batch, host_valid in batches:
        batch, valid = lm_data.to_device(host_batch, device), host_valid.to(device).double()
        mask = batch.get("attention_mask")
        logits = model(input_ids=batch["input_ids"], attention_mask=mask).logits.float()
        sums[2] += valid.sum()
        if num_labels:
            target = batch["labels"]
            sums[0] += (nn.functional.cross_entropy(logits, target, reduction="none").double() * valid).sum()
            sums[1] += valid.sum()
            cells = target * num_labels + logits.argmax(-1)
            sums[3:].index_add_(0, cells, valid)
        else:
            target = batch["input_ids"][:, 1:]
            weight = valid[:, None].expand_as(target)
            if mask is not None:
                weight = weight * mask[:, 1:]  # no loss on padding positions
            losses = nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1), target.flatten(), reduction="none"
            )
            sums[0] += (losses.view_as(target).double() * weight).sum()
            sums[1] += weight.sum()
    model.train()
    dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    values = sums.tolist()
    if values[1] == 0:
        raise ValueError("evaluation saw no validation rows on any rank")
    result = {"eval_loss": values[0] / values[1], "eval_rows": values[2]}
    if num_labels:
        confusion = np.asarray(values[3:]).reshape(num_labels, num_labels)
        result["eval_accuracy"] = float(np.trace(confusion) / confusion.sum())
        result["eval_mcc"] = matthews(confusion)
    return result


def matthews(confusion: np.ndarray) -> float:
    """Matthews correlation from a confusion matrix (rows: true label, columns: prediction), the
    multi-class form (Gorodkin 2004), equal to the binary MCC for two labels; 0 when undefined (all
    predictions or all labels in one class), as scikit-learn and GLUE report it."""
    c = np.asarray(confusion, dtype=np.float64)
    n, correct = c.sum(), np.trace(c)
    true, pred = c.sum(axis=1), c.sum(axis=0)
    denominator = math.sqrt((n * n - pred @ pred) * (n * n - true @ true))
    return float((correct * n - true @ pred) / denominator) if denominator else 0.0


class Meter:
    """Honest throughput: wall-clock rates over each logging interval, every wait included."""

    def __init__(self, cfg: LoopConfig, rt: Runtime, flops_token: float, start: int) -> None:
        self.cfg, self.rt, self.flops_token = cfg, rt, flops_token
        self.mark = (start, time.perf_counter())
        self.tokens = 0.0  # real (non-padding) tokens of all ranks since the mark
        self.peak = gpu_peak_flops(torch.cuda.get_device_name()) if cfg.use_gpu else None

    def count_tokens(self, tokens: float) -> None:
        self.tokens += tokens

    def step(self, done: int, loss: float, metrics: dict[str, Any]) -> None:
        now = time.perf_counter()
        steps, elapsed = done - self.mark[0], now - self.mark[1]
        evaluated = "eval_loss" in metrics
        if self.rt.rank != 0 or not (
            evaluated or elapsed >= self.cfg.log_every_s or done == self.cfg.max_steps
        ):
            return
        samples_s = steps * self.cfg.batch_size * self.rt.world / elapsed
        # tokens/s counts real tokens only; padding is shown apart. MFU counts every position the
        # accelerator computed, padding included: that is the work it did.
        computed_s, real_s = samples_s * self.cfg.seq_len, self.tokens / elapsed
        line = (
            f"step {done}/{self.cfg.max_steps} loss={loss:.4f} lr={metrics['lr']:.2e} "
            f"grad_norm={metrics['grad_norm']:.3f} samples/s={samples_s:.1f} "
            f"tokens/s={real_s:.0f} padding/s={computed_s - real_s:.0f}"
        )
        mfu = 0.0
        if self.peak:
            mfu = computed_s * self.flops_token / (self.peak * self.rt.world)
            line += f" mfu={mfu:.1%}"
        if self.rt.publish is not None:
            self.rt.publish(real_s, mfu)
        for key in ("eval_loss", "eval_accuracy", "eval_mcc"):
            if key in metrics:
                line += f" {key}={metrics[key]:.4f}"
        log(line)
        self.mark, self.tokens = (done, now), 0.0

    def checkpoint(self, done: int, stall: float) -> None:
        if self.rt.rank == 0:
            log(
                f"checkpoint step {done}: training stalled {stall * 1000:.1f} ms ({self.cfg.checkpoint_mode})"
            )


def gpu_peak_flops(device_name: str) -> float | None:
    return next((peak for name, peak in GPU_PEAK_FLOPS if name in device_name), None)


# --- launchers ----------------------------------------------------------------------------------


def ray_runtime(cfg: LoopConfig) -> Runtime:
    import ray.train  # noqa: PLC0415
    import ray.train.torch  # noqa: PLC0415

    ctx = ray.train.get_context()
    storage = ctx.get_storage()

    @contextlib.contextmanager
    def restore_dir() -> Iterator[str | None]:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            yield directory

    def dataset(name: str) -> Any:
        try:
            return ray.train.get_dataset_shard(name)
        except KeyError:  # no such dataset: synthetic data, or no validation split
            return None

    def save(saver: Any, model: nn.Module, optimizer: Any, state: dict, metrics: dict) -> float:
        return report_checkpoint(
            saver, model, optimizer, state=state, metrics=metrics, rank=ctx.get_world_rank(), storage=storage
        )

    def export_to(local_dir: str) -> None:
        copy_to_storage(local_dir, storage, lm_checkpoint.EXPORT_DIR)
        log(f"exported Hugging Face model to {storage.experiment_fs_path}/{lm_checkpoint.EXPORT_DIR}")

    def publish(tokens_per_s: float, mfu: float) -> None:
        lm_metrics.report_throughput(
            tokens_per_s, mfu, run=ctx.get_experiment_name(), rank=ctx.get_world_rank()
        )

    return Runtime(
        rank=ctx.get_world_rank(),
        world=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        restore_dir=restore_dir,
        dataset=dataset,
        save=save,
        export_to=export_to,
        publish=publish,
    )


def report_checkpoint(
    saver: Any, model: nn.Module, optimizer: Any, *, state: dict, metrics: dict, rank: int, storage: Any
) -> float:
    """Saves with DCP and reports the checkpoint to Ray Train once its files are complete.

    On a local or mounted storage path (FSx) DCP writes straight into the run's directory, so the
    data crosses to storage once; elsewhere (s3://) it writes a local temp dir that is copied after.
    With async saves, Ray Train's ASYNC upload mode runs `upload` in its background thread: it waits
    for DCP's writes, then rank 0 writes train_state.json, and only then is the checkpoint reported.
    """
    import pyarrow.fs  # noqa: PLC0415
    import ray.train  # noqa: PLC0415
    from ray.train import CheckpointUploadMode  # noqa: PLC0415

    name = f"checkpoint_{state['step']:08d}"
    direct = isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem)
    target = os.path.join(storage.experiment_fs_path, name) if direct else tempfile.mkdtemp(prefix="ckpt-")
    stall = saver.save(target, model, optimizer)
    written: Future | None = saver.pending

    def upload(checkpoint: Any, dir_name: str) -> Any:
        if written is not None:
            written.result()
        if rank == 0:
            lm_checkpoint.write_state(target, state)
        if direct:
            return ray.train.Checkpoint(os.path.join(storage.experiment_fs_path, dir_name))
        copy_to_storage(target, storage, dir_name)
        shutil.rmtree(target, ignore_errors=True)
        return ray.train.Checkpoint(
            f"{storage.experiment_fs_path}/{dir_name}", filesystem=storage.storage_filesystem
        )

    mode = CheckpointUploadMode.ASYNC if saver.mode == "async" else CheckpointUploadMode.SYNC
    t0 = time.perf_counter()
    ray.train.report(
        metrics,
        checkpoint=ray.train.Checkpoint.from_directory(target),
        checkpoint_dir_name=name,
        checkpoint_upload_mode=mode,
        delete_local_checkpoint_after_upload=False,
        checkpoint_upload_fn=upload,
    )
    return stall + time.perf_counter() - t0


def copy_to_storage(local_dir: str, storage: Any, name: str) -> None:
    import pyarrow.fs  # noqa: PLC0415

    dest = f"{storage.experiment_fs_path}/{name}"
    storage.storage_filesystem.create_dir(dest)
    pyarrow.fs.copy_files(local_dir, dest, destination_filesystem=storage.storage_filesystem)


def torchrun_runtime(use_gpu: bool) -> Runtime:
    """Plain torch.distributed from torchrun's environment: no checkpoints, synthetic data only."""
    backend = "nccl" if use_gpu else "gloo"
    dist.init_process_group(backend)
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return Runtime(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        device=device,
        restore_dir=lambda: contextlib.nullcontext(None),
        dataset=lambda name: None,
        save=None,
        export_to=None,
    )
