"""per_annotator_lora: an independent LoRA per annotator, the "specialised models" baseline.

Its tables grow with the annotator count, so it refuses to build past
adapter.max_trainable_params, checked before anything is allocated: 100,000
annotators x r=8 on SmolLM2's q/v would be ~11 G parameters, which must fail in a
second, not in an out-of-memory kill.
"""

from __future__ import annotations

from hyperscale.adapters.kinds import AdapterKind
from hyperscale.errors import ConfigError


class PerAnnotatorLoRAKind(AdapterKind):
    name = "per_annotator_lora"
    summary = "an independent LoRA per annotator (bounded by adapter.max_trainable_params)"
    order = 40
    unknown_annotator = "the mean A and the mean B"

    def build_lora(self, cfg, specs, condition_sizes, backbone, n_classes):
        from hyperscale.adapters.lora import PerAnnotatorLoRA, lora_param_count

        a, n = cfg.adapter, condition_sizes["annotator"]
        per = lora_param_count(specs, a.rank)
        need = n * per + (backbone.hidden_size + 1) * n_classes
        if need > a.max_trainable_params:
            raise ConfigError(
                "adapter.max_trainable_params",
                f"per_annotator_lora needs {need:,} trainable parameters ({n:,} annotators x {per:,} per LoRA at "
                f"rank {a.rank}), over the bound {a.max_trainable_params:,}.",
                f"raise adapter.max_trainable_params to at least {need:,}, lower adapter.rank or "
                f"adapter.target_modules, or use adapter.kind=hyper_lora, whose size does not grow with annotators.")
        return PerAnnotatorLoRA(specs, a.rank, n)


KIND = PerAnnotatorLoRAKind()
