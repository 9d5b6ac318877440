"""annotator_embedding: a shared LoRA plus a learned annotator embedding added to the pooled
vector before a dense-GELU-linear head (AART, Deng et al. 2023; GELU, not tanh: heads.py)."""

from __future__ import annotations

from hyperscale.adapters.kinds import AdapterKind


class AnnotatorEmbeddingKind(AdapterKind):
    name = "annotator_embedding"
    summary = "shared LoRA + a learned annotator embedding added to the pooled vector (AART)"
    order = 20
    own_classifier = True
    unknown_annotator = "the mean embedding"

    def build_head(self, cfg, backbone, labels, condition_sizes):
        from hyperscale.adapters import heads

        if cfg.model.task == "sft":  # the embedding is added before the frozen LM head instead
            return heads.AnnotatorEmbeddingCompletionHead(backbone.lm_head, backbone.hidden_size,
                                                    condition_sizes["annotator"])
        return heads.AnnotatorEmbeddingHead(backbone.hidden_size, len(labels), condition_sizes["annotator"])


KIND = AnnotatorEmbeddingKind()
