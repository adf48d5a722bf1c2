"""Hugging Face models for the job: built from a Hub id, a local directory, or a small built-in config.

FSDP2 shards each transformer layer of the model as one unit, then the root (embeddings, final norm,
head). Layers are found from the model's own `_no_split_modules` (the classes Hugging Face itself never
splits across devices: `LlamaDecoderLayer`, `Qwen2DecoderLayer`, `MistralDecoderLayer`, `GPT2Block`,
`BertLayer`, ...) when they sit in a `ModuleList`, else from the longest `ModuleList` of one class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

CAUSAL_LM = "causal-lm"
CLASSIFICATION = "classification"
TASKS = (CAUSAL_LM, CLASSIFICATION)


@dataclass(frozen=True)
class ModelSpec:
    """What to build. `source` None means the built-in Llama-shaped model from the shape fields below."""

    source: str | None
    task: str = CAUSAL_LM
    pretrained: bool = True  # real weights from `source`; False: its config only, random init (tests)
    num_labels: int = 2
    # Classification: the tokenizer's pad id (EOS where it has no pad token; lm_data.pad_token_id), so
    # a decoder's *ForSequenceClassification pools from the last real token of right-padded rows.
    pad_token_id: int | None = None
    activation_checkpointing: bool = False
    # Built-in model only (source None): a small Llama, so the default run needs no download.
    vocab_size: int = 4096
    hidden_size: int = 256
    n_layers: int = 4
    n_heads: int = 4
    max_seq_len: int = 128

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hf_config(spec: ModelSpec) -> Any:
    """The model's transformers config (downloads only config.json for a Hub id)."""
    from transformers import AutoConfig, LlamaConfig  # noqa: PLC0415 - keeps unit imports light

    if spec.source is None:
        return LlamaConfig(
            vocab_size=spec.vocab_size,
            hidden_size=spec.hidden_size,
            intermediate_size=4 * spec.hidden_size,
            num_hidden_layers=spec.n_layers,
            num_attention_heads=spec.n_heads,
            num_key_value_heads=spec.n_heads,
            max_position_embeddings=spec.max_seq_len,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )
    extra = {"num_labels": spec.num_labels} if spec.task == CLASSIFICATION else {}
    return AutoConfig.from_pretrained(spec.source, **extra)


def create(spec: ModelSpec, seed: int) -> nn.Module:
    """The full, unsharded model on CPU; the same seed on every rank gives the same random init."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: PLC0415

    auto = AutoModelForCausalLM if spec.task == CAUSAL_LM else AutoModelForSequenceClassification
    torch.manual_seed(seed)
    config = hf_config(spec)
    if spec.source is not None and spec.pretrained:
        model = auto.from_pretrained(spec.source, config=config, dtype=torch.float32)
    else:
        model = auto.from_config(config, dtype=torch.float32)
    if spec.task == CLASSIFICATION:
        if spec.pad_token_id is None:
            raise ValueError("classification needs the tokenizer's pad token id (ModelSpec.pad_token_id)")
        # Decoders pool from the rightmost token that is not this id (GPT2ForSequenceClassification,
        # LlamaForSequenceClassification, ...); a config's own default (often 0, or none) would point
        # into the padding or at a real token.
        model.config.pad_token_id = spec.pad_token_id
    return model


def source_dtype(spec: ModelSpec) -> torch.dtype:
    """The dtype the source checkpoint is stored in (config `dtype`): the export is written in it, so a
    bf16 model comes back bf16. fp32 for the built-in model and configs that name none."""
    if spec.source is None:
        return torch.float32
    config = hf_config(spec)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated layers to shard one by one (see the module docstring for how they are found)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    named = [layer for ml in lists for layer in ml if type(layer).__name__ in names]
    if named:
        return named
    uniform = [ml for ml in lists if len({type(layer) for layer in ml}) == 1]
    if not uniform:
        raise ValueError(f"{type(model).__name__}: no transformer layers found to shard")
    return list(max(uniform, key=len))


def shard(model: nn.Module, *, use_gpu: bool, activation_checkpointing: bool) -> nn.Module:
    """Applies activation checkpointing, then FSDP2 per layer and at the root.

    bf16 compute with fp32 gradient reduction on GPU; CPU stays fp32 (bf16 matmuls are slow on CPU).
    """
    if activation_checkpointing:
        # Non-reentrant checkpointing is the variant that composes with FSDP2.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # fully_shard moves each unit to the mesh's device (the rank's GPU) as it shards it, so the full
    # model never sits on one GPU at once; on CPU everything stays in host memory.
    kwargs: dict[str, Any] = {}
    if use_gpu:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in transformer_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def fingerprint(model: nn.Module, task: str) -> dict[str, Any]:
    """What a checkpoint must share with the run that loads it: architecture, task, every parameter shape.

    Taken before sharding, so it does not depend on the world size (DCP reshards across world sizes).
    """
    return {
        "architecture": type(model).__name__,
        "task": task,
        "shapes": {name: list(p.shape) for name, p in model.named_parameters()},
    }


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: 6 per non-embedding parameter plus attention's 12 * layers * width * seq.

    The approximation of the PaLM paper (Chowdhery et al. 2022, appendix B), as used for MFU there.
    Embedding lookups cost no FLOPs, but an LM head tied to the input embedding is a full matmul:
    `parameters()` lists the shared weight once (as the embedding), so it is added back.
    """
    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    params = sum(p.numel() for p in model.parameters()) - embedding + tied_head_params(model)
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0)
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)
    return 6.0 * params + 12.0 * layers * width * seq_len


def tied_head_params(model: nn.Module) -> int:
    """Weights of an output layer that shares its tensor with the input embedding (0 when untied)."""
    get_out = getattr(model, "get_output_embeddings", None)
    get_in = getattr(model, "get_input_embeddings", None)
    head = get_out() if get_out else None
    embed = get_in() if get_in else None
    if head is None or embed is None or head.weight is not embed.weight:
        return 0
    return head.weight.numel()
