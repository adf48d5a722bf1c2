"""Train or fine-tune a Hugging Face model with FSDP2 under Ray Train; resumes by run name.

Locally (starts a local Ray):
    python3 train.py --gpus-per-worker 0 --storage-path "$PWD/.ray_results" --run-name demo
On a cluster:  ray job submit --working-dir jobs/fsdp_ray -- python3 train.py --storage-path /fsx/ray_results
Prints exactly one JSON summary line on stdout at the end (see README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from typing import Any

import failure_policy
import lm_checkpoint
import lm_data
import lm_hooks
import lm_model
import preflight
from lm_loop import AttemptLog, LoopConfig, torchrun_runtime, train, train_loop_per_worker


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


DEFAULT_STEPS = 200


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run = p.add_argument_group("run")
    run.add_argument(
        "--storage-path", default="/fsx/ray_results", help="checkpoint root (local paths made absolute)"
    )
    run.add_argument(
        "--run-name", help="run to start or resume (default: a new timestamped name, i.e. a fresh run)"
    )
    run.add_argument(
        "--num-workers", type=positive_int, default=2, help="ranks; one GPU each with --gpus-per-worker 1"
    )
    run.add_argument(
        "--gpus-per-worker",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: NCCL on one GPU per worker; 0: CPU workers (gloo). Never taken from the cluster",
    )
    run.add_argument(
        "--max-steps", type=positive_int, help=f"total optimizer steps of the run (default {DEFAULT_STEPS})"
    )
    run.add_argument(
        "--epochs", type=positive_int, help="instead of --max-steps: passes over the training data (Ray Data)"
    )
    run.add_argument("--checkpoint-every", type=positive_int, default=20)
    run.add_argument(
        "--checkpoint-mode",
        choices=lm_checkpoint.MODES,
        default="async",
        help="async: DCP async_save (training pauses only to stage to CPU); sync: blocking save",
    )
    run.add_argument("--num-to-keep", type=positive_int, default=2)
    run.add_argument(
        "--max-failures",
        type=int,
        default=-1,
        help="worker-group failures in all that end the run; -1 (default): no cap, progress decides",
    )
    run.add_argument(
        "--max-failures-without-progress",
        type=positive_int,
        default=failure_policy.DEFAULT_LIMIT,
        help="failures in a row with no new step or checkpoint that end the run (a crash loop)",
    )
    run.add_argument(
        "--no-export",
        dest="export",
        action="store_false",
        help="skip the consolidated Hugging Face model (safetensors) written at the end",
    )
    run.add_argument("--log-every-s", type=positive_float, default=10.0, help="interval of the progress line")
    run.add_argument("--seed", type=int, default=0)
    model = p.add_argument_group("model")
    model.add_argument(
        "--model", help="Hub id or local directory (default: a small built-in Llama, random init)"
    )
    model.add_argument(
        "--init",
        choices=("pretrained", "random"),
        default="pretrained",
        help="random: --model's config only, new weights (tests, smoke runs)",
    )
    model.add_argument("--task", choices=lm_model.TASKS, default=lm_model.CAUSAL_LM)
    model.add_argument("--num-labels", type=positive_int, default=2, help="classification only")
    model.add_argument("--activation-checkpointing", action="store_true")
    model.add_argument("--d-model", type=positive_int, default=256, help="built-in model only")
    model.add_argument("--n-layers", type=positive_int, default=4, help="built-in model only")
    model.add_argument("--n-heads", type=positive_int, default=4, help="built-in model only")
    model.add_argument("--vocab-size", type=positive_int, default=4096, help="built-in model only")
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default=lm_data.SYNTHETIC,
        help="synthetic; a Hub dataset; a save_to_disk directory; or JSONL/Parquet files",
    )
    data.add_argument("--dataset-config", help="Hub dataset config, e.g. cola for nyu-mll/glue")
    data.add_argument("--train-split", default="train")
    data.add_argument("--eval-split", help="Hugging Face datasets: the split to evaluate on, e.g. validation")
    data.add_argument(
        "--eval-data", help="JSONL/Parquet datasets: a separate file or directory to evaluate on"
    )
    data.add_argument("--text-field", default="text")
    data.add_argument("--label-field", default="label")
    data.add_argument("--tokenizer", help="Hub id or directory (default: --model's)")
    data.add_argument("--batch-size", type=positive_int, default=8, help="sequences per worker per step")
    data.add_argument("--seq-len", type=positive_int, default=128)
    data.add_argument(
        "--eval-every", type=non_negative_int, default=50, help="steps between evaluations; 0: none"
    )
    data.add_argument(
        "--eval-batches",
        type=positive_int,
        default=8,
        help="synthetic data: validation batches per worker (a dataset's validation set is used whole)",
    )
    data.add_argument(
        "--cache-train-mb",
        type=positive_int,
        default=1024,
        help="per worker: a training shard up to this size is kept in memory after its first pass and "
        "replayed each epoch; larger ones are streamed again by Ray Data every epoch",
    )
    opt = p.add_argument_group("optimizer")
    opt.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    opt.add_argument("--warmup-steps", type=non_negative_int, default=10)
    opt.add_argument("--min-lr-ratio", type=ratio, default=0.1, help="cosine floor, as a share of --lr")
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping; 0 disables it")
    # Hidden: tests and bench only. Progress files (lm_hooks); the torchrun launcher (bench/overhead.py).
    p.add_argument("--progress-dir", help=argparse.SUPPRESS)
    p.add_argument("--launcher", choices=("ray", "torchrun"), default="ray", help=argparse.SUPPRESS)
    p.add_argument("--fail-at-step", type=positive_int, help=argparse.SUPPRESS)  # failure-policy tests
    return p  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_failures < -1:
        parser.error(f"--max-failures must be -1 (forever) or >= 0, got {args.max_failures}")
    if args.model is None and args.d_model % args.n_heads:
        parser.error(f"--d-model ({args.d_model}) must be divisible by --n-heads ({args.n_heads})")
    synthetic = args.dataset == lm_data.SYNTHETIC
    if args.task == lm_model.CLASSIFICATION and (synthetic or args.model is None):
        parser.error("--task classification needs --model and a --dataset with labels")
    if not synthetic and not (args.model or args.tokenizer):
        parser.error(f"--dataset {args.dataset} needs a tokenizer: pass --model or --tokenizer")
    if args.eval_split and args.eval_data:
        parser.error("--eval-split (Hugging Face datasets) and --eval-data (files) exclude each other")
    check_steps(parser, args, synthetic)
    if args.launcher == "torchrun" and not synthetic:
        parser.error("--launcher torchrun runs synthetic data only (it is the overhead benchmark's baseline)")
    if "://" not in args.storage_path:
        args.storage_path = os.path.abspath(os.path.expanduser(args.storage_path))
    args.run_name = args.run_name or time.strftime("fsdp-lm-%Y%m%d-%H%M%S")
    return args


def check_steps(parser: argparse.ArgumentParser, args: argparse.Namespace, synthetic: bool) -> None:
    """--max-steps or --epochs, not both; epochs need a dataset (synthetic data has no end)."""
    if args.epochs is not None and args.max_steps is not None:
        parser.error("--epochs and --max-steps exclude each other: the run length is one or the other")
    if args.epochs is not None and synthetic:
        parser.error("--epochs needs a --dataset: synthetic data has no epochs (use --max-steps)")
    if args.epochs is None and args.max_steps is None:
        args.max_steps = DEFAULT_STEPS


def resolve_epochs(args: argparse.Namespace, datasets: dict[str, Any]) -> None:
    """--epochs in steps: the training rows counted once on the driver (lm_data.train_rows), split
    as Ray Train splits them."""
    if args.epochs is None:
        return
    rows = lm_data.train_rows(data_spec(args), task=args.task, datasets=datasets)
    per_epoch = lm_data.steps_per_epoch(rows, workers=args.num_workers, batch_size=args.batch_size)
    if per_epoch < 1:
        raise SystemExit(
            f"error: --epochs: {rows} training rows give no full batch of {args.batch_size} on each of "
            f"{args.num_workers} workers"
        )
    args.max_steps = args.epochs * per_epoch
    print(f"{args.epochs} epochs of {per_epoch} steps ({rows} rows): --max-steps {args.max_steps}",
          file=sys.stderr)  # fmt: skip


def classification_pad_id(args: argparse.Namespace) -> int | None:
    """The tokenizer's pad id (EOS where none) for the classification model's config; None otherwise."""
    if args.task != lm_model.CLASSIFICATION:
        return None
    return lm_data.pad_token_id(args.tokenizer or args.model)


def data_spec(args: argparse.Namespace) -> lm_data.DataSpec:
    return lm_data.DataSpec(
        source=args.dataset,
        config_name=args.dataset_config,
        train_split=args.train_split,
        eval_split=args.eval_split,
        eval_source=args.eval_data,
        text_field=args.text_field,
        label_field=args.label_field,
        # "": no tokenizer (preflight.Facts: synthetic data with a model directory that has none).
        tokenizer=args.tokenizer if args.tokenizer is not None else args.model,
    )


def loop_config(args: argparse.Namespace, attempt_log: Any = None, run_progress: Any = None) -> LoopConfig:
    model = lm_model.ModelSpec(
        source=args.model,
        task=args.task,
        pretrained=args.init == "pretrained",
        num_labels=args.num_labels,
        pad_token_id=classification_pad_id(args),
        activation_checkpointing=args.activation_checkpointing,
        vocab_size=args.vocab_size,
        hidden_size=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        max_seq_len=args.seq_len,
    )
    return LoopConfig(
        model=model,
        data=data_spec(args),
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        min_lr_ratio=args.min_lr_ratio,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        use_gpu=args.gpus_per_worker > 0,
        checkpoint_mode=args.checkpoint_mode,
        log_every_s=args.log_every_s,
        cache_train_mb=args.cache_train_mb,
        export=args.export and args.launcher == "ray",
        attempt_log=attempt_log,
        progress_dir=args.progress_dir,
        run_progress=run_progress,
        fail_at_step=args.fail_at_step,
    )


EXIT_USER_ERROR = 2  # a mistake in the flags or inputs (preflight, a checkpoint of another run): not retried
EXIT_GAVE_UP = 3  # the failure policy stopped a crash loop: resubmitting would repeat it
RESUME_MISMATCH = re.compile(r"ResumeMismatchError: (.+)")


class RunStoppedError(Exception):
    """The run ends without a result; `code` is the driver's exit status, the message its one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resume_mismatch(error: BaseException) -> str | None:
    """The message of a worker's ResumeMismatchError, from the error itself or, when Ray could only
    hand over a wrapper, from its traceback text ("...ResumeMismatchError: <message>")."""
    failures = getattr(error, "worker_failures", None) or {}
    for cause in [*failures.values(), error]:
        if type(cause).__name__ == "ResumeMismatchError":
            return str(cause)
        found = RESUME_MISMATCH.search(str(cause))
        if found:
            return found.group(1)
    return None


def worker_resources(args: argparse.Namespace, cluster_cpus: float) -> dict[str, float]:
    """One GPU and one CPU per GPU worker. CPU workers with a dataset leave at least one CPU to Ray
    Data's tokenizing tasks: with every CPU held by a worker (e.g. --num-workers 2 on a 2-core local
    Ray) those tasks never start and the first batch never comes. A worker then asks for a share of
    a CPU (scheduling only; the worker is not throttled). GPU nodes have CPUs to spare, and an idle
    autoscaling cluster shows none yet, so GPU workers are left as they are."""
    if args.gpus_per_worker:
        return {"GPU": 1, "CPU": 1}
    if args.dataset == lm_data.SYNTHETIC or cluster_cpus - args.num_workers >= 1:
        return {"CPU": 1}
    return {"CPU": max(0.01, (cluster_cpus - 1) / args.num_workers)}


def build_trainer(args: argparse.Namespace, attempt_log: Any, run_progress: Any = None) -> Any:
    import ray.data  # noqa: PLC0415
    import ray.train  # noqa: PLC0415
    from ray.train.torch import TorchConfig, TorchTrainer  # noqa: PLC0415

    datasets = None
    if args.dataset != lm_data.SYNTHETIC:
        datasets = lm_data.build(data_spec(args), task=args.task, seq_len=args.seq_len)
        resolve_epochs(args, datasets)
    cfg = loop_config(args, attempt_log, run_progress)
    gpu = cfg.use_gpu
    callbacks = [failure_policy.progress_callback(run_progress)] if run_progress is not None else []
    return TorchTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config={"loop": cfg},
        scaling_config=ray.train.ScalingConfig(
            num_workers=args.num_workers,
            use_gpu=gpu,
            resources_per_worker=worker_resources(args, ray.cluster_resources().get("CPU", 0.0)),
        ),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        datasets=datasets,
        # Kept order makes a re-read epoch match the first read, which resume relies on (lm_data), and
        # gives every worker the validation rows in one order; validation is not split: each rank
        # takes its rows of the whole set (lm_data.EvalSet), so none is dropped.
        dataset_config=ray.train.DataConfig(
            datasets_to_split=["train"],
            execution_options=ray.data.ExecutionOptions(preserve_order=True),
        ),
        run_config=ray.train.RunConfig(
            name=args.run_name,
            storage_path=args.storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=args.num_to_keep),
            # Every worker-group failure comes back to the driver's policy (fit_until_done);
            # preemptions stay with Ray Train, which retries them without limit by default.
            failure_config=ray.train.FailureConfig(max_failures=0),
            callbacks=callbacks + lm_hooks.registered_callback(args.progress_dir),
        ),
    )


def driver_actor(actor_class: Any) -> Any:
    """An actor pinned to the driver's node: it dies only with the driver, whatever happens to workers."""
    import ray  # noqa: PLC0415
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

    node = ray.get_runtime_context().get_node_id()
    return actor_class.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()


def fit_until_done(args: argparse.Namespace, attempt_log: Any) -> Any:
    """fit(), and fit() again on the same run (which resumes from its latest checkpoint) after each
    failure the policy retries; RunStoppedError when it stops (failure_policy explains the choice)."""
    import ray  # noqa: PLC0415
    import ray.train  # noqa: PLC0415

    run_progress = driver_actor(failure_policy.RunProgress)
    policy = failure_policy.Policy(args.max_failures_without_progress, args.max_failures)
    while True:
        try:
            return build_trainer(args, attempt_log, run_progress).fit()
        except ray.train.TrainingFailedError as error:
            mismatch = resume_mismatch(error)
            if mismatch:
                raise RunStoppedError(EXIT_USER_ERROR, mismatch) from None
            line = failure_policy.error_line(error)
            reason = policy.after_failure(ray.get(run_progress.mark.remote()), line)
            if reason:
                raise RunStoppedError(EXIT_GAVE_UP, f"run {args.run_name} {reason}") from None
            print(f"retrying run {args.run_name} from its latest checkpoint after: {line}", file=sys.stderr)


def main_ray(args: argparse.Namespace) -> int:
    import ray  # noqa: PLC0415

    # The controller polls workers this often: how soon a dead worker is noticed and a reported
    # checkpoint registered (Ray's default is 2 s). An explicit setting wins.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    ray.init()  # joins the cluster of `ray job submit` (RAY_ADDRESS) or starts a local one
    device = "GPU (nccl)" if args.gpus_per_worker else "CPU (gloo)"
    print(
        f"run {args.run_name} in {args.storage_path}: {args.num_workers} {device} workers, FSDP2",
        file=sys.stderr,
    )
    attempt_log = driver_actor(AttemptLog)
    try:
        result = fit_until_done(args, attempt_log)
    except RunStoppedError as stopped:
        # The last line of the driver's output: Ray puts it into the job's status message.
        print(f"error: {stopped}", file=sys.stderr, flush=True)
        return stopped.code
    export = os.path.join(args.storage_path, args.run_name, lm_checkpoint.EXPORT_DIR) if args.export else None
    summary = {
        "run_name": args.run_name,
        "steps_completed": result.return_value["steps_completed"],
        "start_steps": ray.get(attempt_log.starts.remote()),
        "final_loss": result.return_value["final_loss"],
        "eval": result.return_value.get("eval", {}),
        "checkpoint_path": result.checkpoint.path if result.checkpoint else None,
        "export_path": export,
    }
    print(json.dumps(summary), flush=True)
    return 0


def main_torchrun(args: argparse.Namespace) -> int:
    """The overhead benchmark's baseline: the same loop and config under plain torchrun."""
    rt = torchrun_runtime(args.gpus_per_worker > 0)
    result = train(loop_config(args), rt)
    if rt.rank == 0:
        print(json.dumps({"run_name": args.run_name, **result}), flush=True)
    return 0


def apply_preflight(args: argparse.Namespace) -> None:
    """Runs the driver-side checks (preflight.py) and takes what they learned: the loaded model's
    vocabulary (synthetic data draws token ids below it) and the tokenizer to use."""
    facts = preflight.check(args)
    args.vocab_size = facts.vocab_size
    args.tokenizer = facts.tokenizer


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        apply_preflight(args)
    except preflight.PreflightError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return main_torchrun(args) if args.launcher == "torchrun" else main_ray(args)


if __name__ == "__main__":
    sys.exit(main())
