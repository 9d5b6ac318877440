"""Adapters: what is added to the frozen backbone, and what reads its output.

    base_layers.py  the layer types that can be wrapped (Linear, Conv1D, bnb 4-bit / 8-bit): one dispatcher chain
    inject.py       wrapping target modules; the shared state that carries A, B and row indices to them
    hypernet.py     (condition, module) -> A, B
    lora.py         the LoRA modules: generated (hyper_lora), shared, per annotator
    heads.py        pooled vector -> logits, and the loss
    fallback.py     the unknown-condition fallback, written once
    kinds/          one file per adapter kind (the registry)

Importing this package loads nothing heavy.
"""
