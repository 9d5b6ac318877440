"""hyper_lora: the product. A hypernetwork generates each condition's LoRA (Ignatev et al. 2025;
Hyper-X's task x language conditions; Hyperdecoders' per-instance conditions)."""

from __future__ import annotations

from hyperscale.adapters.kinds import AdapterKind

CATEGORICAL = ("annotator", "task", "language")


class HyperLoRAKind(AdapterKind):
    name = "hyper_lora"
    summary = "hypernetwork (condition embeddings ⊕ module embedding -> MLP -> A, B) per condition"
    order = 0
    takes_conditions = True
    unknown_annotator = "the mean embedding"

    def build_lora(self, cfg, specs, condition_sizes, backbone, n_classes):
        from hyperscale.adapters.hypernet import HyperNetwork
        from hyperscale.adapters.lora import HyperLoRA, SharedLoRA

        a = cfg.adapter
        uses_instance = "instance" in a.conditions
        fields = [c for c in a.conditions if c in CATEGORICAL]
        hypernet = HyperNetwork(a.hypernet, specs, a.rank, {f: condition_sizes[f] for f in fields},
                                instance_in=backbone.hidden_size if uses_instance else None)
        shared = SharedLoRA(specs, a.rank) if a.hypernet.shared_base else None
        return HyperLoRA(hypernet, fields, uses_instance, shared, a.hypernet.condition_dropout)


KIND = HyperLoRAKind()
