"""Unit tests of the job's classification, evaluation and epoch streaming pieces; no Ray cluster."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lm_checkpoint
import lm_data
import lm_loop
import lm_model
import numpy as np
import pytest
import torch
import torch.distributed as dist
from cola import accuracy_and_mcc, make_model, make_tokenizer, reference_predictions, sentences
from safetensors import safe_open


@pytest.fixture
def single_rank_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def classification_spec(model_dir: Path) -> lm_model.ModelSpec:
    pad = lm_data.pad_token_id(str(model_dir))
    return lm_model.ModelSpec(
        source=str(model_dir), task=lm_model.CLASSIFICATION, pretrained=False, pad_token_id=pad
    )


def encode(model_dir: Path, rows: list[dict[str, Any]], seq_len: int = 16) -> dict[str, np.ndarray]:
    return lm_data.tokenize_labelled(
        {"sentence": np.asarray([r["sentence"] for r in rows], dtype=object),
         "label": np.asarray([r["label"] for r in rows])},
        tokenizer=str(model_dir), field="sentence", label_field="label", seq_len=seq_len,
    )  # fmt: skip


def test_a_tokenizer_without_pad_pads_with_eos_on_the_right(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path / "gpt2", "gpt2", make_tokenizer(tmp_path / "tok", with_pad=False))
    tok = lm_data.load_tokenizer(str(model_dir))
    assert lm_data.pad_token_id(str(model_dir)) == tok.eos_token_id
    enc = encode(model_dir, sentences(3, 0))
    lengths = enc["attention_mask"].sum(axis=1)
    for row, n in zip(enc["input_ids"], lengths, strict=True):
        assert (row[n:] == tok.eos_token_id).all()  # padding after the real tokens
        assert (row[:n] != tok.eos_token_id).all()
    model = lm_model.create(classification_spec(model_dir), seed=0)
    assert model.config.pad_token_id == tok.eos_token_id


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_padded_batches_classify_as_each_sentence_alone(tmp_path: Path, family: str) -> None:
    """Hugging Face's *ForSequenceClassification with the tokenizer's pad id and right padding pools
    from the last real token (decoder) / the first (encoder): padded logits equal unpadded ones."""
    tok_dir = make_tokenizer(tmp_path / "tok", with_pad=family == "bert")
    model_dir = make_model(tmp_path / family, family, tok_dir)
    model = lm_model.create(classification_spec(model_dir), seed=0).eval()
    rows = sentences(6, 0)
    enc = encode(model_dir, rows)
    assert len(set(enc["attention_mask"].sum(axis=1).tolist())) > 1  # rows of different lengths
    tok = lm_data.load_tokenizer(str(model_dir))
    with torch.no_grad():
        padded = model(
            input_ids=torch.from_numpy(enc["input_ids"]),
            attention_mask=torch.from_numpy(enc["attention_mask"]),
        ).logits
        alone = torch.cat([model(**tok(r["sentence"], return_tensors="pt")).logits for r in rows])
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)


def test_evaluate_scores_every_row_once_and_matches_a_reference(tmp_path: Path, single_rank_group) -> None:
    """The job's evaluation (FSDP-sharded model, padded batches, fill rows) against the same weights
    unsharded, each sentence alone: identical accuracy and MCC over all 37 rows."""
    model_dir = make_model(tmp_path / "gpt2", "gpt2", make_tokenizer(tmp_path / "tok", with_pad=False))
    spec = classification_spec(model_dir)
    rows = sentences(37, 1)
    columns = encode(model_dir, rows)
    sharded = lm_model.shard(lm_model.create(spec, seed=3), use_gpu=False, activation_checkpointing=False)
    eval_set = lm_data.EvalSet(columns, rank=0, world=1, batch_size=8)
    got = lm_loop.evaluate(sharded, eval_set.batches(), torch.device("cpu"), num_labels=2)

    reference = lm_model.create(spec, seed=3)
    preds = reference_predictions(
        reference, lm_data.load_tokenizer(str(model_dir)), [r["sentence"] for r in rows]
    )
    labels = np.asarray([r["label"] for r in rows])
    accuracy, mcc = accuracy_and_mcc(labels, preds)
    assert got["eval_rows"] == 37
    assert got["eval_accuracy"] == pytest.approx(accuracy)
    assert got["eval_mcc"] == pytest.approx(mcc)
    assert math.isfinite(got["eval_loss"])


@pytest.mark.parametrize(("total", "world", "batch"), [(1043, 32, 8), (37, 2, 8), (3, 4, 2), (16, 2, 8)])
def test_eval_rows_are_dealt_once_across_ranks_with_equal_batch_counts(
    total: int, world: int, batch: int
) -> None:
    columns = {"input_ids": np.arange(total)[:, None].repeat(4, axis=1), "labels": np.arange(total) % 2}
    seen: list[int] = []
    counts = set()
    for rank in range(world):
        batches = list(lm_data.EvalSet(columns, rank=rank, world=world, batch_size=batch).batches())
        counts.add(len(batches))
        for b, valid in batches:
            assert b["input_ids"].shape == (batch, 4)
            seen += b["input_ids"][valid, 0].tolist()
    assert len(counts) == 1  # every rank runs the same number of forwards (FSDP collectives)
    assert sorted(seen) == list(range(total))  # every row exactly once: none dropped, none twice


def test_an_empty_validation_set_is_an_error_not_nan() -> None:
    with pytest.raises(ValueError, match="validation set is empty"):
        lm_data.EvalSet({"input_ids": np.zeros((0, 4))}, rank=0, world=2, batch_size=4)


def test_matthews_matches_the_binary_formula_and_is_zero_when_undefined() -> None:
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    confusion = np.zeros((2, 2))
    np.add.at(confusion, (labels, preds), 1)
    assert lm_loop.matthews(confusion) == pytest.approx(accuracy_and_mcc(labels, preds)[1])
    assert lm_loop.matthews(np.array([[5.0, 0.0], [0.0, 7.0]])) == pytest.approx(1.0)
    assert lm_loop.matthews(np.array([[5.0, 0.0], [7.0, 0.0]])) == 0.0  # one class predicted


class ListShard:
    """The part of Ray Train's DataIterator that ShardStream uses (iter_batches), counting its passes;
    the Ray end-to-end test drives the real one."""

    def __init__(self, rows: int) -> None:
        self.rows, self.passes = rows, 0

    def iter_batches(self, *, batch_size: int, drop_last: bool, batch_format: str):
        self.passes += 1
        ids = np.arange(self.rows)[:, None].repeat(3, axis=1)
        stop = self.rows - self.rows % batch_size if drop_last else self.rows
        for i in range(0, stop, batch_size):
            yield {"input_ids": ids[i : i + batch_size]}


def firsts(stream: lm_data.ShardStream, n: int) -> list[int]:
    return [int(stream.next()["input_ids"][0, 0]) for _ in range(n)]


def test_a_shard_that_fits_is_read_once_and_replayed_every_epoch() -> None:
    shard = ListShard(10)  # 3 full batches of 3 per epoch
    stream = lm_data.ShardStream(shard, 3, torch.device("cpu"))
    assert firsts(stream, 7) == [0, 3, 6, 0, 3, 6, 0]
    assert shard.passes == 1
    assert stream.position() == {"epoch": 2, "batch": 1}
    big = ListShard(10)
    streamed = lm_data.ShardStream(big, 3, torch.device("cpu"), cache_bytes=100)  # over the budget
    assert firsts(streamed, 7) == [0, 3, 6, 0, 3, 6, 0]
    assert big.passes == 3


def test_resume_mid_epoch_continues_at_the_same_batch() -> None:
    stream = lm_data.ShardStream(ListShard(10), 3, torch.device("cpu"))
    firsts(stream, 5)  # epoch 1, batch 2 next
    saved = stream.position()
    resumed = lm_data.ShardStream(
        ListShard(10), 3, torch.device("cpu"), epoch=saved["epoch"], index=saved["batch"]
    )
    assert firsts(resumed, 4) == firsts(stream, 4) == [6, 0, 3, 6]
    assert resumed.position() == stream.position() == {"epoch": 2, "batch": 3}


def test_mfu_counts_a_tied_lm_head(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel  # noqa: PLC0415

    shape = {"vocab_size": 1000, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}
    tied = GPT2LMHeadModel(GPT2Config(**shape, tie_word_embeddings=True))
    untied = GPT2LMHeadModel(GPT2Config(**shape, tie_word_embeddings=False))
    assert lm_model.tied_head_params(tied) == 1000 * 32
    # Same compute either way: the head is a vocab x width matmul whether its weight is shared or not.
    assert lm_model.flops_per_token(tied, 16) == lm_model.flops_per_token(untied, 16)


def test_no_weight_decay_on_biases_and_norms() -> None:
    from transformers import BertConfig, BertForSequenceClassification  # noqa: PLC0415

    config = BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    model = BertForSequenceClassification(config)
    decayed, plain = lm_loop.param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(
        "LayerNorm" not in names[id(p)] and not names[id(p)].endswith("bias") for p in decayed["params"]
    )
    assert {names[id(p)] for p in plain["params"]} >= {"bert.embeddings.LayerNorm.weight", "classifier.bias"}


def test_export_is_written_in_the_source_dtype(tmp_path: Path, single_rank_group) -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: PLC0415

    shape = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
    LlamaConfig(**shape, num_hidden_layers=1, dtype="bfloat16").save_pretrained(tmp_path / "src")
    spec = lm_model.ModelSpec(source=str(tmp_path / "src"), pretrained=False)
    assert lm_model.source_dtype(spec) == torch.bfloat16
    model = lm_model.shard(lm_model.create(spec, seed=0), use_gpu=False, activation_checkpointing=False)
    out = tmp_path / "export"

    def write(local: str) -> None:
        import shutil  # noqa: PLC0415

        shutil.copytree(local, out)

    lm_checkpoint.export_hf(model, architecture="LlamaForCausalLM", tokenizer=None, rank=0, write=write,
                            dtype=lm_model.source_dtype(spec))  # fmt: skip
    with safe_open(out / "model.safetensors", framework="pt") as stored:
        assert {stored.get_tensor(k).dtype for k in stored.keys()} == {torch.bfloat16}  # noqa: SIM118
    loaded = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_the_rng_of_a_step_does_not_depend_on_what_ran_before() -> None:
    lm_loop.seed_step(0, 5, 1)
    a = torch.rand(3)
    torch.rand(100)
    lm_loop.seed_step(0, 5, 1)
    assert torch.equal(a, torch.rand(3))
    lm_loop.seed_step(0, 5, 0)
    assert not torch.equal(a, torch.rand(3))


def test_epochs_and_max_steps_exclude_each_other_and_need_a_dataset(capsys: pytest.CaptureFixture) -> None:
    import train  # noqa: PLC0415

    with pytest.raises(SystemExit):
        train.parse_args(["--epochs", "2"])
    assert "--epochs needs a --dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--epochs", "2", "--max-steps", "5", "--dataset", "x.jsonl", "--tokenizer", "t"])
    assert "exclude each other" in capsys.readouterr().err
    assert train.parse_args([]).max_steps == train.DEFAULT_STEPS
    assert lm_data.steps_per_epoch(8551, workers=2, batch_size=32) == 133  # CoLA's train split


def test_cpu_workers_with_a_dataset_leave_a_cpu_to_ray_data() -> None:
    import train  # noqa: PLC0415

    data = ["--gpus-per-worker", "0", "--num-workers", "2", "--dataset", "x.jsonl", "--tokenizer", "t"]
    assert train.worker_resources(train.parse_args(data), cluster_cpus=2) == {"CPU": 0.5}
    assert train.worker_resources(train.parse_args(data), cluster_cpus=3) == {"CPU": 1}
    synthetic = train.parse_args(["--gpus-per-worker", "0", "--num-workers", "2"])
    assert train.worker_resources(synthetic, cluster_cpus=2) == {"CPU": 1}
    assert train.worker_resources(train.parse_args(["--num-workers", "8"]), cluster_cpus=0) == {
        "GPU": 1,
        "CPU": 1,
    }
