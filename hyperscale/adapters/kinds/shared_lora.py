"""shared_lora: one LoRA for everyone, the perspective-blind baseline (optionally on majority labels)."""

from __future__ import annotations

from hyperscale.adapters.kinds import AdapterKind


class SharedLoRAKind(AdapterKind):
    name = "shared_lora"
    summary = "one LoRA, perspective-blind (adapter.aggregate_labels: true trains on per-item majority labels)"
    order = 10
    can_aggregate = True
    unknown_annotator = "the shared LoRA (it has no per-annotator part)"

    def train_frame(self, frame, labels, cfg):
        if not cfg.adapter.aggregate_labels:
            return frame
        from hyperscale.data.aggregate import majority_labels

        return majority_labels(frame, labels)


KIND = SharedLoRAKind()
