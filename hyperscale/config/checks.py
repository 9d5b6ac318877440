"""Checks that involve more than one config section, run when a RunConfig is built.

Everything here reads only the config: no data, no backbone, no device. Checks
that belong to one adapter kind live in that kind's `validate` (adapters/kinds/)
and are called from here, so a misuse such as `aggregate_labels` on a kind that
has per-annotator parameters fails when the YAML is read, not after the data or
the backbone loaded.
"""

from __future__ import annotations

import os

from hyperscale.errors import ConfigError


def check_run(cfg) -> None:
    """All cross-section checks of a RunConfig, in a fixed order (the first failure is raised)."""
    from hyperscale.adapters.kinds import get_kind

    kind = get_kind(cfg.adapter.kind)  # unknown kind: a ConfigError naming the registered ones
    _check_condition_columns(cfg)
    _check_validation_split(cfg)
    _check_sft(cfg)
    kind.validate(cfg)
    _check_kernel(cfg)
    _check_zero3(cfg)
    _check_dtype(cfg)


def _check_condition_columns(cfg) -> None:
    a, d = cfg.adapter, cfg.data
    synthetic = d.source == "synthetic"
    if "task" in a.conditions and not (d.task_column or (synthetic and d.synthetic.n_tasks > 0)):
        raise ConfigError("adapter.conditions", "conditions on 'task' but the data has no task column.",
                          "set data.task_column (or data.synthetic.n_tasks > 0).")
    if "language" in a.conditions and not (d.language_column or (synthetic and d.synthetic.n_languages > 0)):
        raise ConfigError("adapter.conditions", "conditions on 'language' but the data has no language column.",
                          "set data.language_column (or data.synthetic.n_languages > 0).")


def _check_validation_split(cfg) -> None:
    if cfg.eval.split == "validation" and cfg.data.validation_fraction <= 0:
        raise ConfigError("eval.split", "is 'validation' but data.validation_fraction is 0: there is no validation "
                          "split to score.", "set data.validation_fraction (e.g. 0.2), or eval.split=eval.")
    if cfg.eval.decision == "validation":
        if cfg.data.validation_fraction <= 0:
            raise ConfigError("eval.decision", "is 'validation' but data.validation_fraction is 0: there is no "
                              "validation split to choose the class offsets on.",
                              "set data.validation_fraction (e.g. 0.2), or eval.decision=argmax.")
        if cfg.model.task == "sft":
            raise ConfigError("eval.decision", "is 'validation' with model.task=sft: sft labels are parsed from "
                              "generated text, there are no class probabilities to move.", "set eval.decision=argmax.")


def _check_sft(cfg) -> None:
    if cfg.train.packing and cfg.model.task != "sft":
        raise ConfigError("train.packing", f"is true with model.task={cfg.model.task}: packing joins prompt -> "
                          "completion rows, which only sft has.", "set model.task=sft, or train.packing=false.")
    if cfg.model.task != "sft":
        return
    if cfg.data.messages_column and cfg.data.source != "files":
        raise ConfigError("data.messages_column", f"is set but data.source={cfg.data.source!r} has no chat messages.",
                          "set data.source=files with files holding that column, or unset data.messages_column.")
    if cfg.model.verbalizers is not None and not all(w.strip() for w in cfg.model.verbalizers):
        raise ConfigError("model.verbalizers", f"{cfg.model.verbalizers} holds an empty word: its rows would have an "
                          "empty completion.", "give every label a non-empty word.")


def _check_kernel(cfg) -> None:
    if cfg.adapter.kernel == "triton" and not cfg.distributed.use_gpu and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError("adapter.kernel", "triton needs a CUDA device (or TRITON_INTERPRET=1 for slow CPU checks).",
                          "use adapter.kernel=auto, or set distributed.use_gpu=true on a GPU cluster.")


def _check_zero3(cfg) -> None:
    if cfg.distributed.zero_stage != 3:
        return
    # ZeRO-3 flattens every parameter, frozen ones too, into per-dtype buffers and
    # all-gathers them; bitsandbytes' packed uint8 weights (plus their quant_state)
    # would need bnb_4bit_quant_storage == compute dtype and to be built outside
    # zero.Init. The backbone is frozen and the trainable part is small, so
    # ZeRO-2 already shards what grows (optimizer state, gradients).
    if cfg.model.quantization != "none":
        raise ConfigError("distributed.zero_stage", f"3 with model.quantization={cfg.model.quantization}: "
                          "ZeRO-3 would partition the bitsandbytes-packed frozen weights.",
                          "use distributed.zero_stage=2 for a quantized backbone (the frozen base is not "
                          "sharded, its optimizer state does not exist), or model.quantization=none for ZeRO-3.")
    # The verbalizer head reads the (tied, frozen) LM head outside that module's
    # forward, where ZeRO-3 has not gathered it.
    if cfg.model.task in ("causal_lm", "sft"):
        raise ConfigError("distributed.zero_stage", f"3 with model.task={cfg.model.task} is not supported: the LM head "
                          "is read outside its module's forward, where ZeRO-3 has not gathered it.",
                          "use distributed.zero_stage=2, or model.task=classification.")


def _check_dtype(cfg) -> None:
    if cfg.model.quantization != "none" and cfg.model.compute_dtype == "float16" and not cfg.distributed.use_gpu:
        raise ConfigError("model.compute_dtype", "float16 compute on CPU is not supported by bitsandbytes' CPU path.",
                          "use float32 or bfloat16 on CPU.")
