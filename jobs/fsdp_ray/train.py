"""Train a small decoder-only LM with FSDP2 under Ray Train; resumes by run name.

Run locally (starts a local Ray):  python3 train.py --cpu --storage-path "$PWD/.ray_results" --run-name demo
On a cluster:  ray job submit --working-dir jobs/fsdp_ray -- python3 train.py --storage-path /fsx/ray_results
Prints exactly one JSON summary line on stdout at the end (see README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import fields
from typing import Any

import ray
import ray.train
from lm_data import load_hf_tokens
from lm_loop import AttemptLog, LoopConfig, train_loop_per_worker
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--storage-path",
        default="/fsx/ray_results",
        help="shared checkpoint root (local paths are made absolute)",
    )
    p.add_argument(
        "--run-name",
        default=None,
        help="run to start or resume (default: a new timestamped name, i.e. a fresh run)",
    )
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--cpu", action="store_true", help="force CPU workers (gloo) even if GPUs exist")
    p.add_argument("--max-steps", type=int, default=200, help="total optimizer steps of the run")
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--max-failures", type=int, default=-1, help="worker-group restarts; -1 retries forever")
    p.add_argument("--num-to-keep", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per worker per step")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--vocab-size", type=int, default=4096, help="synthetic data only (HF: tokenizer's)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    hf = p.add_argument_group("Hugging Face data (optional; both --hf-dataset and --hf-tokenizer)")
    hf.add_argument("--hf-dataset", help="dataset name or builder, e.g. wikitext or text")
    hf.add_argument("--hf-tokenizer", help="tokenizer name or local path")
    hf.add_argument("--hf-config", help="dataset config name, e.g. wikitext-2-raw-v1")
    hf.add_argument("--hf-data-files", nargs="+", help="data files for builders such as text or json")
    hf.add_argument("--hf-split", default="train")
    hf.add_argument("--hf-text-field", default="text")
    # Tests and bench only: per-rank progress files (pid, step, timings) in this directory.
    p.add_argument("--progress-dir", help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in (
        "num_workers",
        "max_steps",
        "checkpoint_every",
        "num_to_keep",
        "batch_size",
        "seq_len",
        "d_model",
        "n_layers",
        "n_heads",
        "vocab_size",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_failures < -1:
        parser.error(f"--max-failures must be -1 (forever) or >= 0, got {args.max_failures}")
    if args.d_model % args.n_heads:
        parser.error(f"--d-model ({args.d_model}) must be divisible by --n-heads ({args.n_heads})")
    if not (math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a positive number, got {args.lr}")
    if bool(args.hf_dataset) != bool(args.hf_tokenizer):
        parser.error("--hf-dataset and --hf-tokenizer go together")
    if "://" not in args.storage_path:
        args.storage_path = os.path.abspath(os.path.expanduser(args.storage_path))
    args.run_name = args.run_name or time.strftime("fsdp-lm-%Y%m%d-%H%M%S")
    return args


def use_gpu(args: argparse.Namespace) -> bool:
    return not args.cpu and ray.cluster_resources().get("GPU", 0) >= 1


def load_tokens(args: argparse.Namespace) -> tuple[Any, int]:
    """Tokenizes the HF dataset once here and shares it through the object store: (ref or None, vocab)."""
    if not args.hf_dataset:
        return None, args.vocab_size
    tokens, vocab = load_hf_tokens(
        args.hf_dataset,
        args.hf_tokenizer,
        data_files=args.hf_data_files,
        config_name=args.hf_config,
        split=args.hf_split,
        text_field=args.hf_text_field,
    )
    print(f"HF data: {len(tokens)} tokens, tokenizer vocab {vocab}", file=sys.stderr)
    return ray.put(tokens), -(-vocab // 64) * 64  # pad the vocab to a multiple of 64 for matmul shapes


def build_trainer(args: argparse.Namespace, gpu: bool, attempt_log: Any) -> TorchTrainer:
    tokens_ref, vocab = load_tokens(args)
    loop = LoopConfig(
        model={
            "vocab_size": vocab,
            "d_model": args.d_model,
            "n_layers": args.n_layers,
            "n_heads": args.n_heads,
            "max_seq_len": args.seq_len,
        },
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        seed=args.seed,
        use_gpu=gpu,
        attempt_log=attempt_log,
        tokens_ref=tokens_ref,
        progress_dir=args.progress_dir,
    )
    return TorchTrainer(
        train_loop_per_worker=train_loop_per_worker,
        # Shallow copy on purpose: dataclasses.asdict would deep-copy the actor handle and object ref.
        train_loop_config={f.name: getattr(loop, f.name) for f in fields(loop)},
        scaling_config=ScalingConfig(
            num_workers=args.num_workers, use_gpu=gpu, resources_per_worker={"GPU": 1} if gpu else {"CPU": 1}
        ),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=RunConfig(
            name=args.run_name,
            storage_path=args.storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=args.num_to_keep),
            failure_config=FailureConfig(max_failures=args.max_failures),
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ray Train hands each worker a queue of one report: report() blocks until the controller polls it.
    # Reporting every step would cap the step rate at one per poll (2 s by default); 0.2 s keeps the
    # cap below real step times and detects dead workers sooner. An explicit setting wins.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    ray.init()  # joins the cluster of `ray job submit` (RAY_ADDRESS) or starts a local one
    gpu = use_gpu(args)
    print(
        f"run {args.run_name} in {args.storage_path}: {args.num_workers} "
        f"{'GPU (nccl)' if gpu else 'CPU (gloo)'} workers, FSDP2",
        file=sys.stderr,
    )
    # Pinned to the driver's node: it dies only with the driver, whatever happens to worker nodes.
    attempt_log = AttemptLog.options(
        scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        )
    ).remote()
    result = build_trainer(args, gpu, attempt_log).fit()
    summary = {
        "run_name": args.run_name,
        "steps_completed": result.return_value["steps_completed"],
        "start_steps": ray.get(attempt_log.starts.remote()),
        "final_loss": result.return_value["final_loss"],
        "checkpoint_path": result.checkpoint.path if result.checkpoint else None,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
