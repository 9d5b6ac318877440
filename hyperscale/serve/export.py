"""`hyperscale export RUN_DIR --out DIR`: each requested condition as a plain PEFT LoRA directory.

What the hypernetwork (or the LoRA tables) generates for one condition is an
ordinary LoRA: per adapted module, A (r, d_in) and B (d_out, r), applied as
`y = base(x) + scale * B (A x)`. peft computes `base(x) + (lora_alpha / r) *
lora_B(lora_A(x))`, so writing A as `lora_A.weight`, B as `lora_B.weight` and
`lora_alpha = scale * r` gives the same layer; tests/serve/test_export.py loads
the directories with `peft.PeftModel.from_pretrained` and holds the logits equal
to hyperscale's own within 1e-5 (fp32).

Per condition, OUT/<name>/ holds adapter_config.json + adapter_model.safetensors
(what peft and multi-LoRA servers load) and hyperscale.json (the condition, the
labels, the verbalizer tokens, whether it is the unknown-condition fallback, and
how to read class logits off the model). OUT/export.json indexes the directories
and holds the run's condition vocabulary once. What each task exports:

- causal_lm: the LoRA only (task_type CAUSAL_LM). The frozen LM head scores the
  label words, so any server that loads the base and the LoRA serves it as it is.
- sft: the LoRA only (task_type CAUSAL_LM); the completion is generated from the
  rendered prompt (hyperscale.json `sft`: template, chat column, EOS id).
- classification on a decoder with last-token pooling (hyperscale's default):
  task_type SEQ_CLS with the head's weight as peft's `modules_to_save=["score"]`.
  transformers' `score` is a Linear *without* bias and hyperscale's head has one,
  so the bias (C numbers) is in head.safetensors and hyperscale.json; the class
  logits are `peft logits + logit_bias` (`class_logits` below adds it).
- classification on an encoder (BERT) or with first / mean pooling: no
  sequence-classification class computes that head (BertForSequenceClassification
  puts its pooler's dense + tanh before the classifier; hyperscale reads the
  first token's hidden state directly), so the LoRA is exported on the bare
  encoder (task_type FEATURE_EXTRACTION) and the head (weight, bias, pooling) in
  head.safetensors beside it: exact, but the head is applied outside peft.

Kinds: hyper_lora, shared_lora and per_annotator_lora export exactly;
multi_head exports its shared LoRA with each annotator's own head; annotator_embedding
is refused (its head is dense -> GELU -> linear over pooled + annotator embedding:
no peft module or sequence-classification head computes that), as is hyper_lora with
adapter.hypernet.condition_head (the same kind of branch), and so is any run
conditioned on the instance (Hyperdecoders: the adapter differs per input, there is
no fixed adapter to write). An annotator the run never saw gets the kind's
documented fallback adapter, flagged `"fallback"` in hyperscale.json.

`--with-base` also writes the exact unquantized base (a Hugging Face folder, OUT/base) and names it in every
adapter_config.json: built-in backbones (the embedded SmolLM2 GGUF, the tiny test models) are on no hub under
their hyperscale name, and a multi-LoRA server needs a base folder. A 4-bit run's base is written unquantized:
a server reproduces the run's base only if it quantizes it as hyperscale did (bitsandbytes NF4 with
Params4bit's defaults, backbones/quantize.py); that has not been tried with any server here.

The output is built in a temporary folder beside OUT and renamed into place, so an
existing OUT is replaced whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hyperscale.errors import ConfigError, DataError, RunDirError

FORMAT = 1
INFO = "hyperscale.json"
INDEX = "export.json"
HEAD = "head.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_DIR = "base"  # --with-base
GENERATE_CHUNK = 256  # conditions per hypernetwork call: bounds memory for --all on 100k annotators
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra", "modernbert"}


# ---------------------------------------------------------------- what a run can export


def refusal(cfg) -> str | None:
    """Why this run cannot be exported as fixed LoRA adapters (config only), or None."""
    kind = cfg.adapter.kind
    if "instance" in cfg.adapter.conditions:
        return ("it is conditioned on the instance (adapter.conditions has 'instance'): the hypernetwork makes a "
                "different adapter for every input, so there is no fixed adapter per condition to write. Serve it "
                "with `hyperscale predict`, or train with categorical conditions only.")
    if kind == "annotator_embedding":
        return ("annotator_embedding's perspective lives in its head (dense -> GELU -> linear over the pooled vector "
                "plus a learned annotator embedding), which neither a LoRA nor a sequence-classification head can "
                "express. Serve it with `hyperscale predict`, or train adapter.kind=hyper_lora / per_annotator_lora.")
    if kind == "hyper_lora" and cfg.adapter.hypernet.condition_head is not None:
        return ("adapter.hypernet.condition_head adds a conditioned dense -> GELU -> linear branch to the classifier "
                "(over the pooled vector and the condition embedding), which neither a LoRA nor a "
                "sequence-classification head can express. Serve it with `hyperscale predict`, or train without "
                "condition_head.")
    if kind not in ("hyper_lora", "shared_lora", "per_annotator_lora", "multi_head"):
        return (f"adapter.kind={kind} has no export rule; exportable: hyper_lora, shared_lora, per_annotator_lora, "
                f"multi_head.")
    return None


def head_format(cfg, model_type: str, pooling: str) -> str:
    """'verbalizer' (causal_lm), 'generative' (sft), 'seq_cls' (decoder, last-token pooling) or 'separate' (head
    file beside the LoRA)."""
    if cfg.model.task == "causal_lm":
        return "verbalizer"
    if cfg.model.task == "sft":
        return "generative"
    if model_type not in ENCODER_TYPES and pooling == "last":
        return "seq_cls"
    return "separate"


TASK_TYPES = {"verbalizer": "CAUSAL_LM", "generative": "CAUSAL_LM", "seq_cls": "SEQ_CLS", "separate": "FEATURE_EXTRACTION"}
SEPARATE_WHY = {
    True: "an encoder's sequence-classification model applies its pooler (dense + tanh) before the classifier; "
          "hyperscale's head reads the first token's hidden state directly",
    False: "transformers' sequence-classification models pool the last token; this run pools '{pooling}'",
}


# ---------------------------------------------------------------- conditions


@dataclass
class Condition:
    name: str  # directory name under OUT
    values: dict[str, str | None]  # field -> raw id (None: not given)
    index: dict[str, int]  # field -> vocabulary index, -1 = unknown (the fallback)

    @property
    def fallback(self) -> list[str]:
        return [f for f, i in self.index.items() if i < 0]


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._=-]+", "_", name).strip("._") or "condition"


def resolve_conditions(vocab, annotators, task: str | None, language: str | None) -> list[Condition]:
    """The requested conditions: each annotator (or one condition when the run has no annotator field)
    crossed with the given task / language. `annotators`: "all", a list, or a comma-separated string."""
    fields = vocab.fields
    if isinstance(annotators, str):
        annotators = (vocab.ids("annotator") if "annotator" in fields else []) if annotators == "all" else \
            [a.strip() for a in annotators.split(",") if a.strip()]
    annotators = list(dict.fromkeys(str(a) for a in (annotators or [])))
    given = {"task": task, "language": language}
    for f, v in given.items():
        if v is not None and f not in fields:
            raise DataError(f"--{f} {v!r}: this run is not conditioned on {f} (its conditions: {fields}). "
                            f"Fix: drop --{f}.")
    if "annotator" in fields:
        if not annotators:
            raise DataError("no condition to export: the annotator selection is empty. Fix: pass --annotators "
                            "a,b,c (ids from the run's vocab.json) or --all.")
    elif annotators:
        raise DataError(f"this run is not conditioned on annotators (its conditions: {fields}). Fix: drop "
                        f"--annotators / --all and name the condition with --task / --language.")
    rows = [{"annotator": a} for a in annotators] if "annotator" in fields else [{}]
    conditions, used = [], set()
    for row in rows:
        values = {f: row.get(f, given.get(f)) for f in fields}
        index = {f: int(vocab.index(f, [v])[0]) if v is not None else -1 for f, v in values.items()}
        name = _safe("__".join(f"{v}" if f == "annotator" else f"{f}={v}" for f, v in values.items() if v is not None)
                     or "fallback")
        base, k = name, 1
        while name.lower() in used:  # distinct ids may sanitise to one name (and case-insensitive file systems)
            k += 1
            name = f"{base}-{k}"
        used.add(name.lower())
        conditions.append(Condition(name=name, values=values, index=index))
    return conditions


# ---------------------------------------------------------------- output folder


def check_out(out: str | Path) -> Path:
    """OUT's parent must be a writable folder, and OUT absent, empty or an earlier export (replaced whole)."""
    out = Path(out).absolute()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {str(out)!r}: cannot create its parent folder ({e.strerror}). Fix: pass an --out "
                          f"inside a folder you can write.") from e
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {str(out)!r}: {out.parent} is not writable. Fix: pass an --out inside a folder "
                          f"you can write.")
    if out.exists():
        ours = out.is_dir() and ((out / INDEX).is_file() or (out / INFO).is_file())
        if not ours and (not out.is_dir() or any(out.iterdir())):
            raise RunDirError(f"--out {str(out)!r} exists and is not a hyperscale export; it is never overwritten. "
                              f"Fix: pass a new folder (or remove this one).")
    return out


def _temp_beside(out: Path) -> Path:
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    return tmp


def _readable(folder: Path) -> None:
    """safetensors writes its files 0600; a serving process often runs as another user."""
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` to `out`; an earlier `out` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- the export


@torch.no_grad()
def generate(run, conditions: list[Condition], dtype=torch.float32) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Per condition, {body module name: (A (r, d_in), B (d_out, r))} in `dtype`, from the run's LoRA module."""
    fields = run.vocab.fields
    out = []
    for start in range(0, len(conditions), GENERATE_CHUNK):
        chunk = conditions[start:start + GENERATE_CHUNK]
        n = len(chunk)
        batch = {"input_ids": torch.zeros(n, 1, dtype=torch.long), "attention_mask": torch.ones(n, 1, dtype=torch.long)}
        for f in fields:
            batch[f"cond_{f}"] = torch.tensor([c.index[f] for c in chunk], dtype=torch.long)
        weights, seq_index = run.model.lora(batch, None)  # {name: (A (U,r,d_in), B (U,d_out,r))}, (n,)
        for row in range(n):
            u = int(seq_index[row])
            out.append({name: (A[u].to(dtype).contiguous().clone(), B[u].to(dtype).contiguous().clone())
                        for name, (A, B) in weights.items()})
    return out


@torch.no_grad()
def head_weights(run, condition: Condition, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The classification head one condition reads: weight (C, H), bias (C,) in `dtype`."""
    from hyperscale.adapters.fallback import gather_rows
    from hyperscale.adapters.heads import ClassHead, MultiHead

    head = run.model.head
    if isinstance(head, ClassHead):
        bias = head.proj.bias.to(dtype).clone()
        cond = {f"cond_{f}": torch.tensor([condition.index[f]]) for f in run.vocab.fields}
        extra = run.model.logit_bias(cond)  # hyper_lora's condition_bias: this condition's own (1, C) bias
        if extra is not None:
            bias += extra[0].to(dtype)
        return head.proj.weight.to(dtype).clone(), bias
    if isinstance(head, MultiHead):  # weight (n, H, C), bias (n, C); unknown -> the mean head
        ids = torch.tensor([condition.index["annotator"]])
        return gather_rows(head.weight, ids)[0].t().to(dtype).contiguous(), gather_rows(head.bias, ids)[0].to(dtype)
    raise ConfigError("adapter.kind", f"the {type(head).__name__} head has no export rule.",
                      "export a hyper_lora, shared_lora, per_annotator_lora or multi_head run.")


def skeleton(run, fmt: str):
    """The Hugging Face model the adapters load into, built on the meta device (no weights): for names only."""
    from accelerate import init_empty_weights
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
    )

    conf = _hf_config(run, fmt)
    auto = {"verbalizer": AutoModelForCausalLM, "generative": AutoModelForCausalLM,
            "seq_cls": AutoModelForSequenceClassification,
            "separate": AutoModel}[fmt]
    with init_empty_weights():
        return auto.from_config(conf)


def _hf_config(run, fmt: str):
    import copy

    conf = copy.deepcopy(run.model.body.config)
    conf.pad_token_id = run.tokenizer.pad_token_id
    if fmt == "seq_cls":
        conf.num_labels = len(run.labels)
        conf.id2label = dict(enumerate(run.labels))
        conf.label2id = {v: k for k, v in conf.id2label.items()}
    return conf


def _prefix(model, fmt: str) -> str:
    """Where hyperscale's body sits inside the peft base model: `model.` (Llama), `transformer.` (GPT-2) or ''."""
    return "" if fmt == "separate" else f"{model.base_model_prefix}."


def lora_config(run, fmt: str, full_names: list[str], model):
    """The peft LoraConfig that targets exactly `full_names` (module names in the peft base model)."""
    from peft import LoraConfig

    from hyperscale.adapters.base_layers import dispatch

    a = run.cfg.adapter
    patterns = a.target_modules
    specs = _specs(run)
    kwargs = {}
    if any(p.startswith("re:") for p in patterns):
        target = "^(?:" + "|".join(re.escape(n) for n in full_names) + ")$"  # exactly the adapted modules
    else:
        target = list(patterns)
        if a.layers is not None:
            layer_words = {_layer_word(s.name) for s in specs}
            if len(layer_words) == 1 and None not in layer_words:
                kwargs = {"layers_to_transform": sorted({s.layer for s in specs}),
                          "layers_pattern": layer_words.pop()}
            else:
                target = "^(?:" + "|".join(re.escape(n) for n in full_names) + ")$"
    types = {dispatch(model.get_submodule(n)).name for n in full_names}
    rank = getattr(run.model.lora, "out_rank", a.rank)  # hyper_lora's residual form: [A0; A_gen] at 2r
    config = LoraConfig(
        r=rank, lora_alpha=a.scale * rank, lora_dropout=0.0, bias="none", target_modules=target,
        inference_mode=True,
        fan_in_fan_out="conv1d" in types,  # GPT-2's Conv1D stores (d_in, d_out)
        task_type=TASK_TYPES[fmt], modules_to_save=["score"] if fmt == "seq_cls" else None,
        base_model_name_or_path=_base_name(run), **kwargs)
    _check_targets(config, model, full_names)
    return config


def _layer_word(name: str) -> str | None:
    """`layers` in `layers.3.self_attn.q_proj` (the word before the block number), for peft's layers_pattern."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return parts[i - 1] if i > 0 else None
    return None


def _check_targets(config, model, full_names: list[str]) -> None:
    """peft must adapt exactly the modules hyperscale adapted (same matching code peft runs on load)."""
    from peft.tuners.tuners_utils import check_target_module_exists

    hit = sorted(n for n, _ in model.named_modules() if n and check_target_module_exists(config, n))
    if hit != sorted(full_names):
        raise RuntimeError(f"export: peft's target rule would adapt {len(hit)} modules, hyperscale adapted "
                           f"{len(full_names)} (differ: {sorted(set(hit) ^ set(full_names))[:4]}); please report.")


def _specs(run):
    from hyperscale.adapters.inject import LowRankAdapted

    return [m.spec for m in run.model.body.modules() if isinstance(m, LowRankAdapted)]


def _base_name(run) -> str:
    """base_model_name_or_path: a local model folder as an absolute path; a built-in name as it is (not on any
    hub under that name: `base_model(run)` rebuilds it, and --merged writes a full model)."""
    name = run.cfg.model.name_or_path
    return str(Path(name).absolute()) if Path(name).is_dir() else name


def export(run_dir: str | Path, out: str | Path, annotators="all", *, task: str | None = None,
           language: str | None = None, merged: bool = False, with_base: bool = False) -> dict:
    """Write one PEFT LoRA directory per requested condition under `out` (or, `merged`, one full merged
    checkpoint at `out`; `with_base`, the base model too: write_export). Returns export.json's content.
    Checks everything it can before the model loads."""
    from hyperscale.config import load_config
    from hyperscale.data.vocab import ConditionVocab
    from hyperscale.rundir import RunDir
    from hyperscale.serve.run import load_run

    run_path = RunDir(run_dir)
    if not run_path.path.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} does not exist. Fix: pass the folder `hyperscale train` "
                          f"wrote (it holds config.yaml, vocab.json and model/trainable.safetensors).")
    if not run_path.config.is_file() or not run_path.vocab.is_file():
        raise RunDirError(f"{str(run_dir)!r} holds no config.yaml / vocab.json: not a finished run directory. Fix: "
                          f"pass the folder `hyperscale train` wrote, or finish that run first.")
    cfg = load_config(str(run_path.config))
    why = refusal(cfg)
    if why:
        raise ConfigError("adapter.kind", f"this run cannot be exported: {why}")
    if merged and cfg.model.quantization != "none":
        raise ConfigError("model.quantization", f"is {cfg.model.quantization}: --merged would add the LoRA into "
                          f"quantized weights, which re-quantizes them and changes the predictions (the run computes "
                          f"base(x) in {cfg.model.quantization} plus an unquantized low-rank update).",
                          "export the LoRA directories (no --merged) and serve them on the quantized base, or train "
                          "with model.quantization=none.")
    conditions = resolve_conditions(ConditionVocab.load(str(run_path.vocab)), annotators, task, language)
    if merged and with_base:
        raise DataError("--with-base adds the base model beside adapter directories; --merged already writes a "
                        "full model. Fix: pass one of them.")
    if merged and len(conditions) != 1:
        raise DataError(f"--merged writes one full model for one condition; {len(conditions)} were requested. "
                        f"Fix: pass one annotator (--annotators a01).")
    out = check_out(out)

    run = load_run(run_path.path)
    return write_export(run, conditions, out, merged=merged, with_base=with_base)


def write_export(run, conditions: list[Condition], out: Path, *, merged: bool = False, with_base: bool = False,
                 dtype: torch.dtype = torch.float32) -> dict:
    """Write the export of `conditions` (resolve_conditions) of a loaded run to `out` (checked by check_out).

    `with_base`: also write the exact unquantized base model to OUT/base (a Hugging Face folder) and point
    every adapter's base_model_name_or_path at it, so peft's AutoPeftModel* and multi-LoRA servers need
    nothing else (built-in backbones are on no hub under their hyperscale name).

    `dtype`: of the written A, B and head (float32: what the hypernetwork computes in; float64 only for tests
    that hold the export exact without float32 rounding)."""
    from safetensors.torch import save_file

    from hyperscale.adapters.kinds import get_kind

    cfg = run.cfg
    model_type = getattr(run.model.body.config, "model_type", "")
    fmt = head_format(cfg, model_type, run.model.pooling)
    model = skeleton(run, fmt)
    prefix = _prefix(model, fmt)
    specs = _specs(run)
    full = {s.name: prefix + s.name for s in specs}
    config = lora_config(run, fmt, list(full.values()), model)
    if with_base:
        config.base_model_name_or_path = str(out / BASE_DIR)
    kind = get_kind(cfg.adapter.kind)
    started = time.perf_counter()
    tmp = _temp_beside(out)
    try:
        index = []
        for cond, weights in zip(conditions, generate(run, conditions, dtype)):
            folder = tmp / cond.name if not merged else tmp / "adapter"
            folder.mkdir()
            config.save_pretrained(str(folder))
            tensors = {}
            for name, (A, B) in weights.items():
                tensors[f"base_model.model.{full[name]}.lora_A.weight"] = A  # (r, d_in)
                tensors[f"base_model.model.{full[name]}.lora_B.weight"] = B  # (d_out, r)
            info = _info(run, cond, fmt, kind)
            if fmt in ("seq_cls", "separate"):
                W, b = head_weights(run, cond, dtype)
                if fmt == "seq_cls":
                    tensors["base_model.model.score.weight"] = W.contiguous()  # peft's modules_to_save key
                save_file({"weight": W.contiguous(), "bias": b.contiguous()}, str(folder / HEAD))
                info["head"]["logit_bias"] = [float(x) for x in b]  # repr of a float32 reads back exactly
            save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
            (folder / INFO).write_text(json.dumps(info, indent=1))
            index.append({"dir": cond.name, "condition": cond.values, "fallback": cond.fallback,
                          "bytes": (folder / ADAPTER_WEIGHTS).stat().st_size})
        if with_base:
            base = base_model(run, fmt)
            base.save_pretrained(str(tmp / BASE_DIR))
            run.tokenizer.save_pretrained(str(tmp / BASE_DIR))
        summary = {"format": FORMAT, "run_dir": str(Path(run.run_dir).absolute()), "kind": cfg.adapter.kind,
                   "task_type": TASK_TYPES[fmt], "head": fmt, "base_model_name_or_path": config.base_model_name_or_path,
                   "n_adapters": len(index), "adapters": index,
                   "condition_vocab": {f: run.vocab.ids(f) for f in run.vocab.fields},
                   "fallback_means": kind.unknown_annotator, "labels": run.labels,
                   "seconds": round(time.perf_counter() - started, 3)}
        if merged:
            _write_merged(run, fmt, tmp / "adapter", tmp / "merged")
            info_text = (tmp / "adapter" / INFO).read_text()
            head = tmp / "adapter" / HEAD
            final = tmp / "merged"
            (final / INFO).write_text(info_text)
            if head.exists():
                shutil.copy(head, final / HEAD)
            summary["merged"] = True
            summary["seconds"] = round(time.perf_counter() - started, 3)
            (final / INDEX).write_text(json.dumps(summary, indent=1))
            _readable(final)
            _swap_in(final, out)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            (tmp / INDEX).write_text(json.dumps(summary, indent=1))
            _readable(tmp)
            _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _info(run, cond: Condition, fmt: str, kind) -> dict:
    cfg = run.cfg
    info = {
        "format": FORMAT, "kind": cfg.adapter.kind, "condition": cond.values, "fallback": cond.fallback,
        "fallback_means": kind.unknown_annotator if cond.fallback else None,
        "task": cfg.model.task, "labels": run.labels, "scale": cfg.adapter.scale, "rank": cfg.adapter.rank,
        "base": {"name_or_path": cfg.model.name_or_path, "num_layers": getattr(cfg.model, "num_layers", None),
                 "quantization": cfg.model.quantization,
                 "compute_dtype": run.model.runtime.get("compute_dtype", cfg.model.compute_dtype)},
        "tokenizer": {"pad_token_id": run.tokenizer.pad_token_id, "padding_side": "right",
                      "max_length": cfg.model.max_length},
    }
    if fmt == "verbalizer":
        words = cfg.model.verbalizers or run.labels
        info["causal_lm"] = {"prompt_template": cfg.model.prompt_template, "verbalizers": words,
                             "verbalizer_token_ids": run.model.head.token_ids.tolist(),
                             "read": "class logits = LM logits at the last prompt token, at verbalizer_token_ids"}
        info["head"] = None
    elif fmt == "generative":
        info["sft"] = {"prompt_template": cfg.model.prompt_template, "messages_column": cfg.data.messages_column,
                       "verbalizers": (cfg.model.verbalizers or run.labels) if run.labels else None,
                       "eos_token_id": run.tokenizer.eos_token_id,
                       "read": "generate from the rendered prompt with the adapter active; the completion ends at "
                               "eos_token_id (trained with it)"}
        info["head"] = None
    else:
        info["head"] = {"format": fmt, "file": HEAD, "pooling": run.model.pooling}
        if fmt == "seq_cls":
            info["head"]["read"] = ("class logits = the SEQ_CLS model's logits + logit_bias (transformers' score "
                                    "Linear has no bias; hyperscale's head does)")
        else:
            encoder = getattr(run.model.body.config, "model_type", "") in ENCODER_TYPES
            info["head"]["why_separate"] = SEPARATE_WHY[encoder].format(pooling=run.model.pooling)
            info["head"]["read"] = (f"class logits = pool(last_hidden_state, '{run.model.pooling}') @ weight.T + bias "
                                    f"(weight, bias in {HEAD})")
    return info


# ---------------------------------------------------------------- the base model and a merged checkpoint


def base_model(run, fmt: str | None = None) -> torch.nn.Module:
    """The unquantized float32 Hugging Face model the exported adapters load into, with the run's exact base
    weights (built-in backbones are not on a hub under their hyperscale name: this rebuilds them)."""
    from hyperscale.backbones import embedded, tiny
    from hyperscale.backbones.load import _local_model
    from hyperscale.backbones.names import EMBEDDED

    m = run.cfg.model
    if fmt is None:
        fmt = head_format(run.cfg, getattr(run.model.body.config, "model_type", ""), run.model.pooling)
    if m.name_or_path.startswith(tiny.PREFIX):
        loaded = tiny.model(m, len(run.tokenizer))
    elif m.name_or_path == EMBEDDED:
        loaded = embedded.model(m.task)
    else:
        loaded = _local_model(m)
    if type(getattr(loaded, "hf_quantizer", None)).__name__ == "GgufHfQuantizer":
        # A GGUF file is dequantized to float32 on load, but transformers keeps its quantizer tag, which refuses
        # .float() and would make save_pretrained (--merged, --with-base) write a GGUF quantization_config.
        loaded.hf_quantizer, loaded.is_quantized, loaded.quantization_method = None, False, None
        if getattr(loaded.config, "quantization_config", None) is not None:
            del loaded.config.quantization_config
    if getattr(m, "num_layers", None) is not None:  # the run kept only the first N blocks
        from hyperscale.backbones.load import keep_first_blocks

        keep_first_blocks(loaded, m.num_layers)
    loaded.config.pad_token_id = run.tokenizer.pad_token_id
    if fmt != "seq_cls":
        return loaded.float().eval()
    from transformers import AutoModelForSequenceClassification

    seq = AutoModelForSequenceClassification.from_config(_hf_config(run, fmt))
    getattr(seq, seq.base_model_prefix).load_state_dict(loaded.state_dict())
    return seq.float().eval()


def _write_merged(run, fmt: str, adapter_dir: Path, merged_dir: Path) -> None:
    """Base + one exported adapter, merged by peft itself (so the file is what peft would make)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(base_model(run, fmt), str(adapter_dir))
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(merged_dir))
    run.tokenizer.save_pretrained(str(merged_dir))


# ---------------------------------------------------------------- reading an export back


def load_head(export_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """weight (C, H), bias (C,) of an exported classification head, or None (causal_lm)."""
    from safetensors.torch import load_file

    path = Path(export_dir) / HEAD
    if not path.exists():
        return None
    t = load_file(str(path))
    return t["weight"], t["bias"]


def class_logits(output, attention_mask: torch.Tensor, info: dict, head=None) -> torch.Tensor:
    """(B, C) class logits as hyperscale defines them, from a peft model's forward output.

    `info`: an exported hyperscale.json; `head`: (weight, bias) from load_head, either one head
    ((C, H), (C,)) or one per row ((B, C, H), (B, C)) for a batch mixing adapters.
    """
    from hyperscale.model import pool

    if info["task"] == "sft":
        raise ConfigError("model.task", "an sft export completes prompts; it has no class logits.",
                          "call the peft model's generate() on the rendered prompt (hyperscale.json 'sft').")
    if info["task"] == "causal_lm":
        last = attention_mask.sum(1) - 1  # right padding: the last prompt token
        rows = torch.arange(attention_mask.shape[0], device=attention_mask.device)
        return output.logits[rows, last][:, info["causal_lm"]["verbalizer_token_ids"]].float()
    weight, bias = head
    if info["head"]["format"] == "seq_cls":
        return output.logits.float() + bias
    pooled = pool(output.last_hidden_state, attention_mask, info["head"]["pooling"]).to(weight.dtype)  # (B, H)
    if weight.dim() == 3:
        return torch.einsum("bh,bch->bc", pooled, weight) + bias
    return pooled @ weight.t() + bias
