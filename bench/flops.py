"""FLOPs per token the job's MFU uses (lm_model.flops_per_token), with and without a tied LM head.

Builds each shape on the meta device from a transformers config (no weights, no download) and prints
FLOPs per token as the job counts them now (the tied head's vocab x width matmul included) and as it
counted before (every embedding-shaped weight left out), and how far low the old MFU was.

Usage:  python bench/flops.py [--seq-len 2048]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs" / "fsdp_ray"))
import lm_model  # the job's own FLOPs count (after the path insert above)

# Published shapes (their config.json values), tied embeddings as those models ship them.
SHAPES: dict[str, dict[str, Any]] = {
    "Qwen2.5-0.5B": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
                     "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2,
                     "tie_word_embeddings": True},
    "GPT-2 (124M)": {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12,
                     "tie_word_embeddings": True},
}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=2048)
    args = p.parse_args()
    import torch  # noqa: PLC0415
    from transformers import AutoConfig, AutoModelForCausalLM  # noqa: PLC0415

    rows = {}
    for name, shape in SHAPES.items():
        config = AutoConfig.for_model(**shape)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        now = lm_model.flops_per_token(model, args.seq_len)
        before = now - 6.0 * lm_model.tied_head_params(model)
        rows[name] = {"flops_per_token": now, "without_tied_head": before, "old_mfu_low_by": 1 - before / now}
        print(f"{name:14s} {now / 1e9:7.2f} GFLOP/token (without the tied head {before / 1e9:7.2f}): "
              f"the old MFU read {1 - before / now:.1%} low")  # fmt: skip
    print(json.dumps({"seq_len": args.seq_len, **rows}))


if __name__ == "__main__":
    main()
