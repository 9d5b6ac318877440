"""Parameter efficiency, the issue-11 headline: trainable parameters per kind at N annotators and what one
more annotator adds, on SmolLM2-135M's adapted shapes without loading it.

The adapters' sizes depend only on the adapted modules' (d_in, d_out), the rank, the number of annotators
and the kind's own sizes, so a random Llama with SmolLM2-135M's attention shapes (hidden 576, 9 heads,
3 key-value heads: q 576 -> 576, v 576 -> 192) and 8 blocks stands in for it (compare_*.yaml adapt q and v
in 8 blocks at r=2); the frozen weights are not counted.
"""

from __future__ import annotations

# SmolLM2-135M's attention shapes; intermediate_size and vocab do not enter any adapter's size.
SMOLLM2_SHAPES = ["model.name_or_path=tiny-random-llama", "model.tiny.hidden_size=576", "model.tiny.num_heads=9",
                  "model.tiny.num_kv_heads=3", "model.tiny.intermediate_size=64", "model.tiny.num_layers=8",
                  "adapter.rank=2", "adapter.target_modules=[q_proj,v_proj]", "model.compute_dtype=float32",
                  "data.source=synthetic"]
# hyper_lora at the largest settings of its tune space (experiments/tune.py DEFAULT_SPACE) and its options.
VARIANTS = {
    "per_annotator_lora": ["adapter.kind=per_annotator_lora", "adapter.max_trainable_params=100000000"],
    "shared_lora": ["adapter.kind=shared_lora"],
    "annotator_embedding": ["adapter.kind=annotator_embedding"],
    "multi_head": ["adapter.kind=multi_head"],
    "hyper_lora": ["adapter.kind=hyper_lora"],
    "hyper_lora hidden_dim=32": ["adapter.kind=hyper_lora", "adapter.hypernet.hidden_dim=32"],
    "hyper_lora head_rank=16": ["adapter.kind=hyper_lora", "adapter.hypernet.head_rank=16"],
    "hyper_lora+residual+condition_bias": ["adapter.kind=hyper_lora", "adapter.hypernet.shared_base=true",
                                           "adapter.hypernet.condition_bias=true"],
    "hyper_lora+residual+condition_bias head_rank=64": [
        "adapter.kind=hyper_lora", "adapter.hypernet.shared_base=true", "adapter.hypernet.condition_bias=true",
        "adapter.hypernet.head_rank=64"],
}


def param_budget(n_annotators: int = 1000, variants: dict[str, list[str]] | None = None) -> dict:
    """{variant: {"trainable", "per_new_annotator", "pct_of_per_annotator_lora"}} at `n_annotators`."""
    import torch

    from hyperscale.config import build_config
    from hyperscale.model import build_model

    variants = variants or VARIANTS
    out = {}
    for name, sets in variants.items():
        cfg = build_config({}, [*SMOLLM2_SHAPES, *sets])
        with torch.device("meta"):  # sizes only: nothing is allocated
            model = build_model(cfg, {"annotator": n_annotators}, ["0", "1"])
        out[name] = {"trainable": model.n_trainable(), "per_new_annotator": model.params_per_annotator()}
    ref = out["per_annotator_lora"]["trainable"] if "per_annotator_lora" in out else None
    for rec in out.values():
        rec["pct_of_per_annotator_lora"] = round(100 * rec["trainable"] / ref, 3) if ref else None
    return out


if __name__ == "__main__":
    import json
    import sys

    result = param_budget()
    text = json.dumps({"n_annotators": 1000, "shapes": SMOLLM2_SHAPES, "variants": result}, indent=1)
    if len(sys.argv) > 1:
        from pathlib import Path

        Path(sys.argv[1]).write_text(text + "\n")
    print(text)
