"""multi_head: a shared LoRA plus one classification head per annotator (Davani et al. 2022)."""

from __future__ import annotations

from hyperscale.adapters.kinds import AdapterKind


class MultiHeadKind(AdapterKind):
    name = "multi_head"
    summary = "shared LoRA + one classification head per annotator"
    order = 30
    own_classifier = True
    unknown_annotator = "the mean head"
    no_sft = ("its per-annotator heads are class heads over a pooled vector; an LM head per annotator would be "
              "vocabulary x hidden parameters each (28M for SmolLM2-135M).")

    def build_head(self, cfg, backbone, labels, condition_sizes):
        from hyperscale.adapters.heads import MultiHead

        return MultiHead(backbone.hidden_size, len(labels), condition_sizes["annotator"])


KIND = MultiHeadKind()
