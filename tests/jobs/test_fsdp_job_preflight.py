"""The driver's checks before Ray starts (preflight.py) and the failure policy's decisions
(failure_policy.py): pure functions and real files, no Ray cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import failure_policy
import lm_data
import preflight
import pytest
import train
from failure_policy import Mark, Policy
from fsdp_job import JOB_DIR, make_hf_inputs, make_labelled_dataset, make_tiny_model


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A word-level tokenizer (16 tokens), its corpus, models that fit it, and a tiny Qwen2 of 303."""
    from transformers import AutoModelForCausalLM, Qwen2Config  # noqa: PLC0415

    root = tmp_path_factory.mktemp("hf")
    text, tokenizer_dir = make_hf_inputs(root / "inputs")
    qwen = root / "qwen303"
    shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 2, "max_position_embeddings": 64}  # fmt: skip
    config = Qwen2Config(vocab_size=303, **shape)
    AutoModelForCausalLM.from_config(config).save_pretrained(qwen)  # weights and config, no tokenizer
    return {
        "text": text,
        "tokenizer": tokenizer_dir,
        "llama": make_tiny_model(root / "llama", "llama", tokenizer_dir),
        "bert": make_tiny_model(root / "bert", "bert", tokenizer_dir),
        "small": make_tiny_model(root / "small", "llama", tokenizer_dir, vocab_size=8),
        "qwen303": qwen,
        "cola": make_labelled_dataset(root / "cola"),
    }


def checked(*argv: str) -> preflight.Facts:
    return preflight.check(train.parse_args(["--gpus-per-worker", "0", *argv]))


def refused(*argv: str) -> str:
    with pytest.raises(preflight.PreflightError) as error:
        checked(*argv)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_model_directory_without_a_tokenizer_sets_the_synthetic_vocabulary(hf: dict[str, Path]) -> None:
    """The held-out case: tiny Qwen2 (vocab 303) on synthetic data draws ids below 303, not 4096."""
    args = train.parse_args(["--gpus-per-worker", "0", "--model", str(hf["qwen303"])])
    train.apply_preflight(args)
    cfg = train.loop_config(args)
    assert cfg.model.vocab_size == 303
    assert cfg.data.tokenizer == ""  # none to export: the directory has none
    batch = lm_data.SyntheticBatches(8, 128, cfg.model.vocab_size, seed=0).batch(0, 0)["input_ids"]
    assert int(batch.max()) < 303
    assert checked().vocab_size == 4096  # the built-in model keeps --vocab-size


def test_a_model_that_does_not_load_is_one_error_line(tmp_path: Path) -> None:
    message = refused("--model", str(tmp_path / "missing"))
    assert message.startswith(f"--model {tmp_path / 'missing'}: cannot load its config (")


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused(hf: dict[str, Path]) -> None:
    message = refused("--model", str(hf["small"]), "--dataset", str(hf["text"].with_suffix(".txt")))
    assert "has 16 tokens but the model's vocab_size is 8" in message
    assert "token ids 8..15 would index past the embedding" in message


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_missing_text_field_is_refused_for_jsonl_and_parquet(hf: dict[str, Path], tmp_path: Path) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    lines = hf["text"].read_text().splitlines()
    data = jsonl(tmp_path / "train.jsonl", [{"content": line} for line in lines])
    message = refused("--model", str(hf["llama"]), "--dataset", str(data))
    assert message == f"--text-field 'text' is not a column of {data} (split train); columns: ['content']"
    assert checked("--model", str(hf["llama"]), "--dataset", str(data), "--text-field", "content")
    folder = tmp_path / "parquet"
    folder.mkdir()
    pq.write_table(pa.table({"body": lines}), folder / "part-0.parquet")
    assert "--text-field 'text' is not a column" in refused(
        "--model", str(hf["llama"]), "--dataset", str(folder)
    )
    # The evaluation file is checked as well.
    good = jsonl(tmp_path / "good.jsonl", [{"text": line} for line in lines])
    message = refused("--model", str(hf["llama"]), "--dataset", str(good), "--eval-data", str(data))
    assert f"is not a column of {data}" in message


def test_labelled_hugging_face_datasets_are_checked_for_fields_labels_and_padding(
    hf: dict[str, Path], tmp_path: Path
) -> None:
    base = ["--model", str(hf["bert"]), "--task", "classification", "--dataset", str(hf["cola"])]
    assert "--text-field 'text' is not a column" in refused(*base)
    ok = [*base, "--text-field", "sentence", "--eval-split", "validation"]
    assert checked(*ok).tokenizer == str(hf["bert"])
    assert "no split 'test'" in refused(*base, "--text-field", "sentence", "--eval-split", "test")
    assert "--label-field 'y' is not a column" in refused(*ok, "--label-field", "y")
    message = refused(*ok, "--num-labels", "1")
    assert message.endswith("label 1 in 'label' is not an integer in 0..0 (--num-labels 1)")
    # A tokenizer with neither a pad nor an EOS token cannot pad rows for classification (a decoder's
    # EOS stands in for its missing pad token: lm_data.load_tokenizer).
    from transformers import AutoTokenizer  # noqa: PLC0415

    unpadded = tmp_path / "unpadded"
    tok = AutoTokenizer.from_pretrained(hf["tokenizer"])
    tok.pad_token = None
    tok.eos_token = None
    tok.save_pretrained(unpadded)
    message = refused(*ok, "--tokenizer", str(unpadded))
    assert message.startswith(f"tokenizer {unpadded} has no pad token and no EOS token")
    # With only its EOS, the same tokenizer passes: EOS pads.
    eos_only = tmp_path / "eos-only"
    tok = AutoTokenizer.from_pretrained(hf["tokenizer"])
    assert tok.eos_token is not None
    tok.pad_token = None
    tok.save_pretrained(eos_only)
    assert checked(*ok, "--tokenizer", str(eos_only)).tokenizer == str(eos_only)


def test_a_preflight_error_exits_2_with_one_line_before_ray_starts(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "d.jsonl", [{"body": "x"}])
    done = subprocess.run(
        [sys.executable, "train.py", "--gpus-per-worker", "0", "--dataset", str(data), "--tokenizer",
         str(tmp_path / "none"), "--storage-path", str(tmp_path / "r")],
        cwd=JOB_DIR, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == train.EXIT_USER_ERROR == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: --tokenizer {tmp_path / 'none'}: cannot load a tokenizer ("
        + done.stderr.split("cannot load a tokenizer (", 1)[1].strip()
    ]
    assert not (tmp_path / "r").exists()


def test_the_policy_retries_while_the_run_progresses_and_stops_a_crash_loop() -> None:
    policy = Policy(limit=3)
    # A crash before step 1, every time: three failures in a row without progress end the run.
    assert policy.after_failure(Mark(0, 0), "KeyError: 'text'") is None
    assert policy.after_failure(Mark(0, 0), "KeyError: 'text'") is None
    reason = policy.after_failure(Mark(0, 0), "KeyError: 'text'")
    assert (
        reason
        == "failed 3 times in a row without progress (at step 0, last checkpoint none): KeyError: 'text'"
    )

    # Worker losses that each get further (a higher step or a new checkpoint) never add up.
    lossy = Policy(limit=2)
    for mark in [Mark(7, 5), Mark(12, 10), Mark(12, 15), Mark(40, 35), Mark(41, 40)]:
        assert lossy.after_failure(mark, "ActorDiedError: worker died") is None
    assert lossy.without_progress == 0
    # A crash after a checkpoint: the first failure made progress, the repeats do not.
    after = Policy(limit=3)
    marks = [Mark(6, 5), Mark(6, 5), Mark(6, 5)]
    assert [after.after_failure(m, "E") for m in marks] == [None, None, None]
    assert after.after_failure(Mark(6, 5), "E").startswith("failed 3 times in a row")
    # Progress resets the count; --max-failures caps all failures, progress or not.
    capped = Policy(limit=3, max_failures=1)
    assert capped.after_failure(Mark(1, 0), "E") is None
    assert (
        capped.after_failure(Mark(2, 0), "E")
        == "failed 2 times (--max-failures 1; at step 2, last checkpoint none): E"
    )


class WrappedWorkerError(Exception):
    """Shaped like Ray's WorkerGroupError: worker_failures maps rank to the worker's exception."""

    def __init__(self, failures: dict[int, Exception]) -> None:
        super().__init__("Training failed due to worker errors")
        self.worker_failures = failures


def test_the_error_line_is_the_workers_own_error_and_a_resume_mismatch_is_found() -> None:
    traceback = "Traceback (most recent call last):\n  File x\nKeyError: 'text'\n"
    assert failure_policy.error_line(WrappedWorkerError({0: RuntimeError(traceback)})) == "KeyError: 'text'"
    assert failure_policy.error_line(WrappedWorkerError({1: OSError("disk full")})) == "OSError: disk full"
    mismatch = "Traceback ...\nlm_checkpoint.ResumeMismatchError: checkpoint /x does not match this run (a)\n"
    assert train.resume_mismatch(WrappedWorkerError({0: RuntimeError(mismatch)})) == (
        "checkpoint /x does not match this run (a)"
    )
    assert train.resume_mismatch(WrappedWorkerError({0: RuntimeError(traceback)})) is None
