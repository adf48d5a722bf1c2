"""Unit tests of the fsdp_ray job's pieces; no Ray cluster is started."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import lm_checkpoint
import numpy as np
import pytest
import torch
import torch.distributed as dist
import train
from fsdp_job import hf_env, make_hf_inputs
from lm_data import SyntheticBatches, TokenBlockBatches, load_hf_tokens
from lm_loop import build_model
from lm_model import ModelConfig, TinyLM

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)


def test_forward_shape_and_causality() -> None:
    torch.manual_seed(0)
    model = TinyLM(CFG)
    tokens = torch.randint(0, 64, (3, 16))
    logits = model(tokens)
    assert logits.shape == (3, 16, 64)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 64
    # A decoder must not look ahead: changing the last token leaves earlier positions untouched.
    torch.testing.assert_close(model(changed)[:, :-1], logits[:, :-1])


def test_synthetic_batches_are_deterministic_and_sharded() -> None:
    src = SyntheticBatches(batch_size=4, seq_len=16, vocab_size=100, seed=7)
    a = src.batch(step=3, rank=1, world_size=2)
    assert a.shape == (4, 17)
    assert a.dtype == torch.int64
    assert int(a.min()) >= 0
    assert int(a.max()) < 100
    assert torch.equal(a, SyntheticBatches(4, 16, 100, seed=7).batch(3, 1, 2))
    assert not torch.equal(a, src.batch(3, 0, 2))
    assert not torch.equal(a, src.batch(4, 1, 2))
    assert not torch.equal(a, SyntheticBatches(4, 16, 100, seed=8).batch(3, 1, 2))


def test_token_blocks_partition_each_step_across_ranks() -> None:
    tokens = np.arange(10 * 9, dtype=np.int32)  # 10 blocks of seq_len + 1 = 9, each block unique
    src = TokenBlockBatches(tokens, batch_size=2, seq_len=8, seed=0)
    rows = [src.batch(step=1, rank=r, world_size=2) for r in range(2)]
    firsts = {int(t) for b in rows for t in b[:, 0]}
    assert len(firsts) == 4  # 2 ranks x 2 rows, no block shared within the step
    assert torch.equal(rows[0], TokenBlockBatches(tokens, 2, 8, seed=0).batch(1, 0, 2))
    seen = {int(t) for step in range(3) for r in range(2) for t in src.batch(step, r, 2)[:, 0]}
    assert len(seen) == 10  # the first epoch (steps 0..2, 12 rows) covers every block


def test_token_blocks_reject_a_stream_shorter_than_a_block() -> None:
    with pytest.raises(ValueError, match="fewer than one block"):
        TokenBlockBatches(np.arange(5, dtype=np.int32), batch_size=1, seq_len=8, seed=0)


def test_load_hf_tokens_from_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, tokenizer_dir = make_hf_inputs(tmp_path / "hf")
    for key, value in hf_env(tmp_path / "cache").items():
        monkeypatch.setenv(key, value)
    tokens, vocab = load_hf_tokens("text", str(tokenizer_dir), data_files=[str(text)])
    assert vocab == 2 + len(set(text.read_text().split()))
    assert len(tokens) == 300 * 13  # 12 words and one EOS per line
    assert int(tokens.max()) < vocab
    with pytest.raises(ValueError, match="no field"):
        load_hf_tokens("text", str(tokenizer_dir), data_files=[str(text)], text_field="body")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
        (["--num-workers", "0"], "--num-workers must be >= 1"),
        (["--d-model", "100", "--n-heads", "3"], "must be divisible by --n-heads"),
        (["--max-failures", "-2"], "--max-failures must be -1"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--hf-dataset", "text"], "--hf-dataset and --hf-tokenizer go together"),
    ],
)
def test_invalid_args_are_rejected(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        train.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_retry_forever_and_start_a_fresh_run() -> None:
    args = train.parse_args([])
    assert args.max_failures == -1
    assert args.storage_path == "/fsx/ray_results"
    assert args.run_name.startswith("fsdp-lm-")
    assert train.parse_args(["--storage-path", "rel"]).storage_path == os.path.abspath("rel")
    assert train.parse_args(["--storage-path", "s3://b/p"]).storage_path == "s3://b/p"


@pytest.fixture
def single_rank_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.usefixtures("single_rank_group")
def test_sharded_checkpoint_round_trip(tmp_path: Path) -> None:
    """Saves an FSDP2 model with DCP and restores it into a fresh one: weights and optimizer state match."""
    model = build_model(CFG, seed=0, device=torch.device("cpu"), use_gpu=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 64, (2, 16))).sum().backward()
    opt.step()
    state = {"step": 5, "loss": 1.5, "world_size": 1, "model": CFG.to_dict()}
    lm_checkpoint.save(str(tmp_path / "ck"), model, opt, rank=0, state=state)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "train_state.json",
    ]

    fresh = build_model(CFG, seed=1, device=torch.device("cpu"), use_gpu=False)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    assert lm_checkpoint.load(str(tmp_path / "ck"), fresh, fresh_opt, expected_model=CFG.to_dict()) == state
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(a.full_tensor(), b.full_tensor())
    exp_avg = [s["exp_avg"].full_tensor() for s in fresh_opt.state.values()]
    assert exp_avg
    assert all(math.isfinite(float(t.abs().sum())) and float(t.abs().sum()) > 0 for t in exp_avg)

    with pytest.raises(lm_checkpoint.CheckpointError, match="was written for model"):
        lm_checkpoint.load(
            str(tmp_path / "ck"), fresh, fresh_opt, expected_model={**CFG.to_dict(), "d_model": 64}
        )


def test_incomplete_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / ".metadata").write_bytes(b"x")
    with pytest.raises(lm_checkpoint.CheckpointError, match=re.escape("missing ['train_state.json']")):
        lm_checkpoint.validate(str(tmp_path))
    (tmp_path / "train_state.json").write_text(json.dumps({"step": 4, "world_size": 2}))
    (tmp_path / "__0_0.distcp").write_bytes(b"x")
    with pytest.raises(lm_checkpoint.CheckpointError, match=re.escape("__1_0.distcp")):
        lm_checkpoint.validate(str(tmp_path))
