"""Unit tests of the fsdp_ray job's pieces; no Ray cluster is started."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import lm_checkpoint
import lm_data
import lm_hooks
import lm_loop
import lm_model
import numpy as np
import pytest
import torch
import torch.distributed as dist
import train
from fsdp_job import make_hf_inputs, make_tiny_model

TINY_ARGS = ["--gpus-per-worker", "0", "--d-model", "32", "--n-layers", "2", "--n-heads", "2",
             "--vocab-size", "64", "--seq-len", "16", "--batch-size", "2", "--max-steps", "40",
             "--warmup-steps", "5", "--lr", "1e-2"]  # fmt: skip


def tiny_config(*extra: str) -> lm_loop.LoopConfig:
    return train.loop_config(train.parse_args([*TINY_ARGS, *extra]))


def test_synthetic_batches_are_deterministic_and_differ_by_rank_and_step() -> None:
    src = lm_data.SyntheticBatches(batch_size=4, seq_len=16, vocab_size=100, seed=7)
    a = src.batch(step=3, rank=1)["input_ids"]
    assert a.shape == (4, 16)
    assert a.dtype == torch.int64
    assert 0 <= int(a.min()) <= int(a.max()) < 100
    assert torch.equal(a, lm_data.SyntheticBatches(4, 16, 100, seed=7).batch(3, 1)["input_ids"])
    assert not torch.equal(a, src.batch(3, 0)["input_ids"])
    assert not torch.equal(a, src.batch(4, 1)["input_ids"])


def test_pack_joins_documents_with_eos_and_drops_the_partial_block() -> None:
    blocks = lm_data.pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4, eos=0)
    # stream 1 2 3 0 4 5 0 6 7 8 9 0 -> three full blocks of 4
    assert blocks.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert lm_data.pack([[1, 2]], seq_len=4, eos=None).shape == (0, 4)


def test_ray_data_tokenizers_pack_text_and_pad_labelled_rows(tmp_path: Path) -> None:
    text, tokenizer_dir = make_hf_inputs(tmp_path / "hf")
    lines = np.asarray(text.read_text().splitlines()[:10], dtype=object)
    packed = lm_data.tokenize_and_pack({"text": lines}, tokenizer=str(tokenizer_dir), field="text", seq_len=8)
    assert packed["input_ids"].shape == (10 * 13 // 8, 8)  # 12 words + EOS per line
    labelled = lm_data.tokenize_labelled(
        {"sentence": lines[:3], "label": np.asarray([0, 1, 1])},
        tokenizer=str(tokenizer_dir), field="sentence", label_field="label", seq_len=16,
    )  # fmt: skip
    assert labelled["input_ids"].shape == (3, 16)
    assert labelled["attention_mask"].sum(axis=1).tolist() == [12, 12, 12]
    assert labelled["labels"].tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    ("family", "layer_class"),
    [
        ("llama", "LlamaDecoderLayer"),
        ("qwen2", "Qwen2DecoderLayer"),
        ("mistral", "MistralDecoderLayer"),
        ("gpt2", "GPT2Block"),
        ("bert", "BertLayer"),
    ],
)
def test_each_transformer_layer_is_found_for_sharding(family: str, layer_class: str) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: PLC0415

    shape = {"llama": {}, "qwen2": {}, "mistral": {}, "gpt2": {"n_embd": 32, "n_layer": 3, "n_head": 2}}
    config = AutoConfig.for_model(
        family,
        **shape.get(family, {}) or {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
                                    "num_key_value_heads": 2, "intermediate_size": 64},
        vocab_size=64,
    )  # fmt: skip
    auto = AutoModelForSequenceClassification if family == "bert" else AutoModelForCausalLM
    layers = lm_model.transformer_layers(auto.from_config(config))
    assert [type(layer).__name__ for layer in layers] == [layer_class] * 3


def test_flops_per_token_follows_the_palm_formula() -> None:
    cfg = tiny_config()
    model = lm_model.create(cfg.model, seed=0)
    h, layers, vocab, inter = 32, 2, 64, 128
    # Llama layer: q k v o (h*h each), gate up down (h*inter each), two RMSNorms; then final norm and head.
    non_embedding = layers * (4 * h * h + 3 * h * inter + 2 * h) + h + vocab * h
    assert lm_model.flops_per_token(model, seq_len=16) == 6 * non_embedding + 12 * layers * h * 16


def test_warmup_then_cosine_to_the_floor() -> None:
    cfg = tiny_config("--max-steps", "25", "--warmup-steps", "5", "--min-lr-ratio", "0.1")
    factor = lm_loop.lr_lambda(cfg)
    assert [factor(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factor(15) == pytest.approx(0.55)  # half way through the cosine: (1 + 0.1) / 2
    assert factor(25) == pytest.approx(0.1)
    assert all(factor(s) >= factor(s + 1) for s in range(5, 30))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint-every", "0"], "--checkpoint-every: must be >= 1, got 0"),
        (["--num-workers", "0"], "--num-workers: must be >= 1, got 0"),
        (["--gpus-per-worker", "2"], "--gpus-per-worker: invalid choice: 2"),
        (["--d-model", "100", "--n-heads", "3"], "must be divisible by --n-heads"),
        (["--max-failures", "-2"], "--max-failures must be -1"),
        (["--lr", "nan"], "--lr: must be a positive number, got nan"),
        (["--min-lr-ratio", "2"], "--min-lr-ratio: must be between 0 and 1"),
        (["--task", "classification"], "--task classification needs --model"),
        (["--dataset", "data.jsonl"], "needs a tokenizer: pass --model or --tokenizer"),
        (["--dataset", "d", "--model", "m", "--eval-split", "v", "--eval-data", "e"], "exclude each other"),
        (["--checkpoint-mode", "later"], "--checkpoint-mode: invalid choice"),
    ],
)
def test_invalid_args_are_rejected(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        train.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_use_one_gpu_per_worker_retry_forever_and_start_a_fresh_run() -> None:
    args = train.parse_args([])
    assert args.gpus_per_worker == 1  # an explicit flag, not what an autoscaling cluster shows now
    assert args.max_failures == -1
    assert args.checkpoint_mode == "async"
    assert args.storage_path == "/fsx/ray_results"
    assert args.run_name.startswith("fsdp-lm-")
    assert train.parse_args(["--storage-path", "rel"]).storage_path == os.path.abspath("rel")
    assert train.parse_args(["--storage-path", "s3://b/p"]).storage_path == "s3://b/p"


def test_gpu_peak_table_and_nccl_line() -> None:
    assert lm_loop.gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert lm_loop.gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert lm_loop.gpu_peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert lm_loop.gpu_peak_flops("Tesla T4") is None
    line = lm_loop.nccl_line({"FI_PROVIDER": "efa", "NCCL_NET": "AWS Libfabric"}, (2, 27, 3))
    assert (
        line
        == "NCCL 2.27.3: NCCL_NET=AWS Libfabric FI_PROVIDER=efa; expected transport: EFA via aws-ofi-nccl"
    )
    assert "socket or IB" in lm_loop.nccl_line({}, (2, 27, 3))


@pytest.fixture
def single_rank_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield dist.new_group(backend="gloo")
    dist.destroy_process_group()


def build(cfg: lm_loop.LoopConfig, seed: int):
    base = lm_model.create(cfg.model, seed)
    key = cfg.resume_key(lm_model.fingerprint(base, cfg.model.task))
    model = lm_model.shard(base, use_gpu=False, activation_checkpointing=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lm_loop.lr_lambda(cfg)), key


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_checkpoint_round_trip_restores_weights_optimizer_and_schedule(
    tmp_path: Path, single_rank_group, mode: str
) -> None:
    """DCP (async_save works on gloo too) into a fresh model: weights, AdamW state and LR all match."""
    cfg = tiny_config()
    model, opt, sched, key = build(cfg, seed=0)
    batch = lm_data.SyntheticBatches(2, 16, 64, seed=0)
    for step in range(7):
        lm_loop.train_step(model, opt, sched, batch.batch(step, 0), max_grad_norm=1.0)
    saver = lm_checkpoint.Saver(mode, single_rank_group)
    directory = str(tmp_path / "ck")
    stall = saver.save(directory, model, opt)
    assert stall >= 0
    saver.wait()
    state = {"step": 7, "loss": 1.5, "world_size": 1, "resume_key": key, "scheduler": sched.state_dict()}
    lm_checkpoint.write_state(directory, json.loads(json.dumps(state)))
    assert sorted(p.name for p in Path(directory).iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "train_state.json",
    ]

    fresh, fresh_opt, fresh_sched, fresh_key = build(cfg, seed=1)
    restored = lm_loop.restore(
        lm_loop.Runtime(0, 1, torch.device("cpu"), lambda: _dir(directory), lambda n: None, None, None),
        model=fresh, optimizer=fresh_opt, scheduler=fresh_sched, resume_key=fresh_key,
        group=single_rank_group,
    )  # fmt: skip
    assert restored["step"] == 7
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(a.full_tensor(), b.full_tensor())
    exp_avg = [s["exp_avg"].full_tensor() for s in fresh_opt.state.values()]
    assert exp_avg
    assert all(float(t.abs().sum()) > 0 for t in exp_avg)
    # The schedule continues where it was: the next step's LR equals the uninterrupted run's.
    assert fresh_sched.get_last_lr() == pytest.approx(sched.get_last_lr())
    lm_loop.train_step(model, opt, sched, batch.batch(7, 0), max_grad_norm=1.0)
    lm_loop.train_step(fresh, fresh_opt, fresh_sched, batch.batch(7, 0), max_grad_norm=1.0)
    assert fresh_sched.get_last_lr() == pytest.approx(sched.get_last_lr())
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(a.full_tensor(), b.full_tensor())


def _dir(directory: str):
    import contextlib  # noqa: PLC0415

    return contextlib.nullcontext(directory)


def test_gradient_clipping_bounds_the_update(single_rank_group) -> None:
    cfg = tiny_config("--lr", "1.0", "--warmup-steps", "0")
    model, opt, sched, _ = build(cfg, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    before = [p.full_tensor().clone() for p in model.parameters()]
    _, norm, _ = lm_loop.train_step(
        model, opt, sched, lm_data.SyntheticBatches(2, 16, 64, 0).batch(0, 0), 0.01
    )
    assert norm > 0.01  # the raw gradient norm is reported, then clipped before the SGD step
    with torch.no_grad():
        moved = torch.sqrt(
            sum(((p.full_tensor() - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True))
        )
    assert float(moved) == pytest.approx(0.01, rel=1e-3)


def test_a_changed_model_is_refused_with_one_line_naming_the_difference(tmp_path: Path) -> None:
    cfg = tiny_config()
    saved = cfg.resume_key(lm_model.fingerprint(lm_model.create(cfg.model, 0), cfg.model.task))
    wider = tiny_config("--d-model", "64")
    now = wider.resume_key(lm_model.fingerprint(lm_model.create(wider.model, 0), wider.model.task))
    with pytest.raises(lm_checkpoint.ResumeMismatchError) as exc:
        lm_checkpoint.check_resume_key(saved, now, "ck")
    message = str(exc.value)
    assert "\n" not in message
    assert "model.embed_tokens.weight: saved [64, 32], now [64, 64]" in message
    assert "parameters differ" in message
    assert "use a new --run-name" in message
    longer = tiny_config("--seq-len", "32")
    with pytest.raises(lm_checkpoint.ResumeMismatchError, match="seq_len: saved 16, now 32"):
        lm_checkpoint.check_resume_key(saved, longer.resume_key(lm_model.fingerprint(
            lm_model.create(longer.model, 0), "causal-lm")), "ck")  # fmt: skip
    lm_checkpoint.check_resume_key(saved, dict(saved), "ck")  # the same run passes


def test_export_writes_a_hugging_face_model_that_loads_with_the_same_logits(
    tmp_path: Path, single_rank_group
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    _, tokenizer_dir = make_hf_inputs(tmp_path / "hf")
    model_dir = make_tiny_model(tmp_path / "llama", "llama", tokenizer_dir)
    cfg = tiny_config("--model", str(model_dir), "--init", "random")
    model, *_ = build(cfg, seed=0)
    out = tmp_path / "export"
    lm_checkpoint.export_hf(
        model, architecture="LlamaForCausalLM", tokenizer=str(model_dir), rank=0,
        write=lambda d: __import__("shutil").copytree(d, out),
    )  # fmt: skip
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, model(tokens).logits)
    assert len(AutoTokenizer.from_pretrained(out)) == len(AutoTokenizer.from_pretrained(tokenizer_dir))


def test_incomplete_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / ".metadata").write_bytes(b"x")
    with pytest.raises(lm_checkpoint.CheckpointError, match=re.escape("missing ['train_state.json']")):
        lm_checkpoint.validate(str(tmp_path))
    (tmp_path / "train_state.json").write_text(json.dumps({"step": 4, "world_size": 2}))
    (tmp_path / "__0_0.distcp").write_bytes(b"x")
    with pytest.raises(lm_checkpoint.CheckpointError, match=re.escape("__1_0.distcp")):
        lm_checkpoint.validate(str(tmp_path))


def test_progress_hook_writer_and_readers_agree(tmp_path: Path) -> None:
    hook = lm_hooks.Progress(str(tmp_path), rank=1, start_step=10)
    for step in range(11, 11 + lm_hooks.WARMUP_STEPS + 3):
        hook.update(step, 0.01, stall_s=0.5 if step == 12 else None)
    [data] = lm_hooks.progress(tmp_path)
    assert (data["rank"], data["pid"], data["step"], data["checkpoint_step"]) == (1, os.getpid(), 16, 12)
    assert data["checkpoint_stalls_s"] == [0.5]
    assert lm_hooks.steady_steps_per_s(data) > 0
    assert len(data["step_ends_at"]) == lm_hooks.WARMUP_STEPS + 3
    assert lm_hooks.latest_per_rank(tmp_path)[1]["step"] == 16
    assert lm_hooks.registered_checkpoint(tmp_path) is None
    [callback] = lm_hooks.registered_callback(str(tmp_path))
    callback.after_report(None, [{"step": 20}, {"step": 20}], checkpoint=type("C", (), {"path": "/c"})())
    callback.after_report(None, [{"step": 21}], checkpoint=None)  # metrics-only reports do not count
    assert lm_hooks.registered_checkpoint(tmp_path) == 20
    assert lm_hooks.registered_callback(None) == []
    assert math.isfinite(data["started_at"])
