"""Driver-side checks before Ray starts: a user's mistake becomes one `error:` line and exit 2.

Without them a wrong `--text-field`, an unloadable `--model` or a tokenizer larger than the model's
vocabulary fails on every worker at the first step, and Ray Train restarts the worker group (every
GPU reloading the model) until the failure policy gives up. Here the driver loads the model's config
and the tokenizer, reads the dataset's schema and its first `SAMPLE_ROWS` rows, and checks fields,
labels, padding and token ids against the model, in seconds and without a worker group.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lm_data
import lm_model

SAMPLE_ROWS = 1000  # rows read per dataset for the label and token-id checks (the whole column is not)
# Any of these makes a local directory a tokenizer: transformers 5 otherwise "loads" an empty one.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


class PreflightError(ValueError):
    """A mistake in the flags or the inputs they name; its message is one line."""


@dataclass(frozen=True)
class Facts:
    """What the run learned from its inputs: the model's vocabulary, and the tokenizer to use
    ("" for none: synthetic data needs no tokenizer, and a model directory may have none)."""

    vocab_size: int
    tokenizer: str


def first_line(error: BaseException) -> str:
    """`Type: first line of the message`, so a long library error still fits on one line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def check(args: Any) -> Facts:
    """All checks, in the order a user would fix them; raises PreflightError on the first failure."""
    vocab = model_vocab(args)
    synthetic = args.dataset == lm_data.SYNTHETIC
    tokenizer_source = args.tokenizer or args.model or ""
    tokenizer = None
    if tokenizer_source and (not synthetic or args.tokenizer):
        tokenizer = load_tokenizer(tokenizer_source, "--tokenizer" if args.tokenizer else "--model")
    elif tokenizer_source:
        # Synthetic data only needs the tokenizer for the export: a model directory without one is fine.
        tokenizer = optional_tokenizer(tokenizer_source)
        tokenizer_source = tokenizer_source if tokenizer is not None else ""
    if tokenizer is not None:
        check_tokenizer_fits(tokenizer, tokenizer_source, vocab)
    if not synthetic:
        classification = args.task == lm_model.CLASSIFICATION
        if classification and tokenizer.pad_token_id is None:
            raise PreflightError(
                f"tokenizer {tokenizer_source} has no pad token and no EOS token to pad with, and --task "
                "classification pads every row to --seq-len: use a tokenizer with one (--tokenizer)"
            )
        check_dataset(args, args.dataset, args.train_split, tokenizer, vocab)
        if args.eval_data:
            check_dataset(args, args.eval_data, args.train_split, tokenizer, vocab)
        elif args.eval_split:
            check_dataset(args, args.dataset, args.eval_split, tokenizer, vocab)
    return Facts(vocab_size=vocab, tokenizer=tokenizer_source)


def model_vocab(args: Any) -> int:
    """The vocabulary of the model the workers will build; loading its config proves --model exists."""
    if args.model is None:
        return args.vocab_size
    try:
        config = lm_model.hf_config(lm_model.ModelSpec(source=args.model, task=args.task))
    except Exception as error:
        raise PreflightError(f"--model {args.model}: cannot load its config ({first_line(error)})") from None
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 1:
        raise PreflightError(f"--model {args.model}: its config has no vocab_size")
    return vocab


def has_tokenizer(source: str) -> bool:
    """A Hub id may have one (loading tells); a local directory has one only with its files."""
    path = Path(source)
    return not path.is_dir() or any((path / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(source: str, flag: str) -> Any:
    if not has_tokenizer(source):
        raise PreflightError(
            f"{flag} {source}: no tokenizer files in it ({', '.join(TOKENIZER_FILES)}); pass --tokenizer"
        )
    try:
        return lm_data.load_tokenizer(source)
    except Exception as error:
        raise PreflightError(f"{flag} {source}: cannot load a tokenizer ({first_line(error)})") from None


def optional_tokenizer(source: str) -> Any:
    if not has_tokenizer(source):
        return None
    try:
        return lm_data.load_tokenizer(source)
    except Exception:
        return None


def check_tokenizer_fits(tokenizer: Any, source: str, vocab: int) -> None:
    """Every id a tokenizer can emit is below len(tokenizer); the model's embedding has `vocab` rows."""
    size = len(tokenizer)
    if size > vocab:
        raise PreflightError(
            f"tokenizer {source} has {size} tokens but the model's vocab_size is {vocab}: token ids "
            f"{vocab}..{size - 1} would index past the embedding; use the model's own tokenizer"
        )


def check_dataset(args: Any, source: str, split: str, tokenizer: Any, vocab: int) -> None:
    """The text (and label) fields exist; sampled labels fit --num-labels; sampled token ids fit vocab."""
    columns, rows = sample(source, config_name=args.dataset_config, split=split)
    classification = args.task == lm_model.CLASSIFICATION
    needed = [("--text-field", args.text_field)]
    if classification:
        needed.append(("--label-field", args.label_field))
    for flag, field in needed:
        if field not in columns:
            raise PreflightError(
                f"{flag} {field!r} is not a column of {source} (split {split}); columns: {sorted(columns)}"
            )
    if classification:
        check_labels(source, [row.get(args.label_field) for row in rows], args.num_labels, args.label_field)
    texts = [str(row[args.text_field]) for row in rows if row.get(args.text_field) is not None]
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"] if texts else []
    top = max((max(seq) for seq in ids if seq), default=-1)
    if top >= vocab:
        raise PreflightError(
            f"{source}: the tokenizer produces token id {top}, but the model's vocab_size is {vocab}; "
            "use the model's own tokenizer"
        )


def check_labels(source: str, labels: list[Any], num_labels: int, field: str) -> None:
    for label in labels:
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < num_labels:
            raise PreflightError(
                f"{source}: label {label!r} in {field!r} is not an integer in 0..{num_labels - 1} "
                f"(--num-labels {num_labels})"
            )


def sample(source: str, *, config_name: str | None, split: str) -> tuple[set[str], list[dict[str, Any]]]:
    """The column names and the first SAMPLE_ROWS rows, read the way lm_data.read reads the source."""
    path = Path(source)
    try:
        if not path.exists():
            return hf_sample(source, config_name=config_name, split=split, saved=False)
        if path.is_dir() and any((path / m).is_file() for m in lm_data.HF_SAVED_MARKERS):
            return hf_sample(source, config_name=config_name, split=split, saved=True)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        if not files:
            raise PreflightError(f"--dataset {source}: no files in it")
        if files[0].suffix == ".parquet":
            return parquet_sample(files[0])
        if files[0].suffix in (".jsonl", ".json"):
            return jsonl_sample(files[0])
        raise PreflightError(f"{source}: expected .jsonl/.json or .parquet files, found {files[0].name}")
    except PreflightError:
        raise
    except Exception as error:
        reason = first_line(error)
        raise PreflightError(f"dataset {source} (split {split}): cannot read it ({reason})") from None


def hf_sample(
    source: str, *, config_name: str | None, split: str, saved: bool
) -> tuple[set[str], list[dict]]:
    import datasets  # noqa: PLC0415

    if saved:
        loaded = datasets.load_from_disk(source)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise PreflightError(f"{source}: no split {split!r}; splits: {sorted(loaded)}")
            loaded = loaded[split]
    else:
        loaded = datasets.load_dataset(source, config_name, split=split)
    head = loaded.select(range(min(SAMPLE_ROWS, len(loaded))))
    return set(loaded.column_names), head.to_list()


def parquet_sample(path: Path) -> tuple[set[str], list[dict]]:
    import pyarrow.parquet as pq  # noqa: PLC0415

    file = pq.ParquetFile(path)
    batch = next(file.iter_batches(batch_size=SAMPLE_ROWS), None)
    return set(file.schema_arrow.names), batch.to_pylist() if batch is not None else []


def jsonl_sample(path: Path) -> tuple[set[str], list[dict]]:
    """JSON Lines: one object per line. Columns are the union of the sampled rows' keys."""
    with path.open() as lines:
        rows = [json.loads(line) for line in itertools.islice(lines, SAMPLE_ROWS) if line.strip()]
    if not all(isinstance(row, dict) for row in rows):
        raise PreflightError(f"{path}: expected one JSON object per line")
    return {key for row in rows for key in row}, rows
