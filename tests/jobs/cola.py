"""CoLA-shaped inputs for the classification tests, built locally (no Hub access): sentences with a 0/1
label as JSONL train and validation files, a word-level tokenizer with or without a pad token, and
tiny decoder (GPT-2) and encoder (BERT) model directories from transformers configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

WORDS = ("the", "a", "model", "ray", "train", "shard", "step", "token", "loss", "batch", "node", "gpu", "cpu")


def sentences(n: int, offset: int) -> list[dict[str, Any]]:
    """Rows of different lengths (so padding and the last real token matter); label 1 when the
    sentence mentions "gpu", as a grammaticality label would depend on its words."""
    rows = []
    for i in range(n):
        length = 3 + (i * 7 + offset) % 9
        words = [WORDS[(i * 5 + j * 3 + offset) % len(WORDS)] for j in range(length)]
        sentence = " ".join(words)
        rows.append({"sentence": sentence, "label": int("gpu" in words)})
    return rows


def write_cola(directory: Path, n_train: int, n_eval: int) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, n, offset in (("train", n_train, 0), ("validation", n_eval, 1)):
        path = directory / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in sentences(n, offset)))
        paths.append(path)
    return paths[0], paths[1]


def make_tokenizer(directory: Path, *, with_pad: bool) -> Path:
    """A word-level tokenizer; without a pad token it is shaped like GPT-2's (EOS only)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.txt"
    corpus.write_text(" ".join(WORDS) + "\n")
    specials = ["[UNK]", "[EOS]", "[PAD]"] if with_pad else ["[UNK]", "[EOS]"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(corpus)], trainers.WordLevelTrainer(special_tokens=specials))
    extra = {"pad_token": "[PAD]"} if with_pad else {}
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", **extra
    ).save_pretrained(directory)
    return directory


def make_model(directory: Path, family: str, tokenizer_dir: Path) -> Path:
    """config.json plus tokenizer files, no weights (the job runs it with --init random)."""
    from transformers import AutoTokenizer, BertConfig, GPT2Config  # noqa: PLC0415

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if family == "gpt2":
        # GPT-2's own config: pad_token_id None, EOS as BOS/EOS, tied head.
        config: Any = GPT2Config(
            vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
            bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        )  # fmt: skip
    else:
        config = BertConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
    config.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@torch.no_grad()
def reference_predictions(model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Each sentence alone, unpadded: the classifier reads its true last token (decoders) or its
    first (encoders) with no padding in play, the reference the job's padded batches must match."""
    model.eval()
    preds = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")
        preds.append(int(model(**ids).logits.argmax(-1)))
    return np.asarray(preds)


def accuracy_and_mcc(labels: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    """Binary MCC by its textbook formula (independent of lm_loop.matthews)."""
    tp = float(np.sum((preds == 1) & (labels == 1)))
    tn = float(np.sum((preds == 0) & (labels == 0)))
    fp = float(np.sum((preds == 1) & (labels == 0)))
    fn = float(np.sum((preds == 0) & (labels == 1)))
    denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    mcc = (tp * tn - fp * fn) / denominator if denominator else 0.0
    return float(np.mean(labels == preds)), mcc
