"""hyperscale: hypernetwork-generated LoRA per annotator (task, language, instance) on quantized
backbones, trained by DeepSpeed ZeRO workers that Ray launches.

The public API (the CLI is built on it):

    import hyperscale
    cfg = hyperscale.load_config("configs/synthetic.yaml", ["train.max_steps=50"])
    metrics = hyperscale.train(cfg, "runs/x", use_ray=False)        # eval.json's metrics
    hyperscale.Predictor.from_run("runs/x").predict(["a text"], ["a01", "a02"])
    hyperscale.onboard("runs/x", "new_annotators.csv", k=16)
    hyperscale.export("runs/x", "exported/", ["a01", "a02"])      # PEFT LoRA directories, one per annotator
    hyperscale.predict_file("runs/x", "corpus.parquet", "labels.parquet")   # every text x annotator, resumable
    hyperscale.compare("configs/synthetic.yaml", "hyper_lora,shared_lora", "runs/cmp", seeds=[0, 1, 2])
    model = hyperscale.build_model(cfg, {"annotator": 40}, ["0", "1"])
    out = hyperscale.lowrank_update(base_out, x, A, B, idx, scale)   # the batched op

Importing hyperscale loads no torch; each name loads what it needs on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "load_config": "hyperscale.config", "build_config": "hyperscale.config", "RunConfig": "hyperscale.config",
    "train": "hyperscale.api", "compare": "hyperscale.api", "onboard": "hyperscale.api",
    "build_model": "hyperscale.api", "export": "hyperscale.api", "predict_file": "hyperscale.api",
    "Predictor": "hyperscale.serve.predict", "load_run": "hyperscale.serve.run",
    "lowrank_update": "hyperscale.ops", "kind_names": "hyperscale.adapters.kinds",
    "HyperscaleError": "hyperscale.errors", "ConfigError": "hyperscale.errors", "DataError": "hyperscale.errors",
    "CheckpointError": "hyperscale.errors", "RunDirError": "hyperscale.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hyperscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(__all__)
