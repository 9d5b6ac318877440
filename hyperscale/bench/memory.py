"""Memory planner: predicted bytes per device for a run, and (--measure) a check against a real step.

    hyperscale bench memory CONFIG [--model-config config.json] [--workers N] [--perspectives N]
                                   [--set KEY=VALUE ...] [--measure] [--out plan.json]

"Does Llama-3-8B / 70B 4-bit with 10,000 perspectives fit on 8 x 80 GB under ZeRO-2 or 3?"
is answered from shapes alone: a Hugging Face config.json (--model-config; see
configs/models/) gives the backbone's shapes without weights, the run config gives
quantization, adapter kind, targets, layers, rank, batch, length, checkpointing,
ZeRO stage and offload. Terms, per device (N = workers):

  weights        frozen backbone: quantized projections (nf4: 0.5 B/param + one uint8
                 absmax per 64 weights + one fp32 per 256 absmax (double quantization);
                 int8: 1 B/param + one fp32 scale per output row; none: compute dtype),
                 embeddings and norms in the compute dtype; /N under ZeRO-3 (+ one block
                 gathered). Replicated under ZeRO 0-2.
  trainable      LoRA module (hypernetwork, tables, A/B) + head, counted exactly by building
                 them on the meta device; fp32; /N under ZeRO-3.
  master         ZeRO 1-3 keep an fp32 copy of their partition of the trainables (4 B / N).
  gradients      fp32; full under ZeRO 0-1, /N under ZeRO 2-3.
  grad_buckets   ZeRO 1-3 reduce through a contiguous bucket of reduce_bucket_size elements
                 (x2 with overlap_comm); on GPU it is allocated whole; on CPU only the part
                 written (about the trainables) becomes resident.
  optimizer      AdamW's two fp32 moments, /N under ZeRO 1-3; 0 on the device with
                 offload_optimizer (reported as host memory instead).
  activations    what autograd keeps for backward, per token of each block from the lowest
                 adapted one up (below it nothing needs a gradient): two RMSNorms (input and
                 output, 2 x 2H), q, k, v after RoPE (k, v repeated to all heads), the
                 attention output and o_proj's input (5 x heads x head_dim), the MLP's gate,
                 up, SiLU(gate) and down_proj's input (4 x intermediate); in the compute dtype.
                 Fused attention (SDPA) is assumed: no T x T matrix is kept. With gradient
                 checkpointing only each block's input (H) is kept, plus one block's worth.
  workspace      bitsandbytes dequantizes a quantized projection to the compute dtype for every
                 training matmul: the largest one, once; plus backward's gradients in flight
                 through one block (2 x hidden + 2 x intermediate per token).

`--measure` builds the model through hyperscale's own builder and DeepSpeed engine, runs
optimizer steps on a synthetic batch, and compares the measured peak (RSS above the
process's footprint before the model was built, on CPU; max_memory_allocated on CUDA)
with the prediction for the same shapes. It never asserts; it prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hyperscale.errors import ConfigError

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BLOCK, NF4_NESTED_BLOCK = 64, 256
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DS_REDUCE_BUCKET = 500_000_000  # DeepSpeed's default reduce_bucket_size (elements)


@dataclass(frozen=True)
class ModelShape:
    """A Llama-style decoder's shapes (what the planner needs of a config.json)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool = True
    source: str = ""

    @classmethod
    def from_hf(cls, conf: dict, source: str = "") -> ModelShape:
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "vocab_size") if k not in conf]
        if missing:
            raise ConfigError("--model-config", f"{source or 'the model config'} lacks {missing}: the planner "
                              "knows Llama-style decoders (llama, mistral, qwen2, smollm).",
                              "pass a Hugging Face config.json of such a model (see configs/models/).")
        h, heads = conf["hidden_size"], conf["num_attention_heads"]
        return cls(hidden=h, intermediate=conf["intermediate_size"], layers=conf["num_hidden_layers"], heads=heads,
                   kv_heads=conf.get("num_key_value_heads") or heads, head_dim=conf.get("head_dim") or h // heads,
                   vocab=conf["vocab_size"], tied=bool(conf.get("tie_word_embeddings", False)), source=source)

    def projections(self) -> dict[str, tuple[int, int]]:
        """name -> (d_in, d_out) of each dense projection of one block."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def n_params(self) -> int:
        per_block = sum(a * b for a, b in self.projections().values()) + 2 * self.hidden
        return self.layers * per_block + self.vocab * self.hidden + self.hidden


def shape_for(cfg, model_config: str | None) -> ModelShape:
    """Shapes from --model-config, else from the run config's backbone (no weights are read)."""
    if model_config:
        path = Path(model_config)
        if not path.is_file():
            raise ConfigError("--model-config", f"{model_config} is not a file.",
                              "pass a Hugging Face config.json, e.g. configs/models/llama-3-8b.json.")
        return ModelShape.from_hf(json.loads(path.read_text()), str(path))
    m = cfg.model
    if m.name_or_path == "tiny-random-llama":
        from hyperscale.backbones.load import load_tokenizer

        t = m.tiny
        return ModelShape(hidden=t.hidden_size, intermediate=t.intermediate_size, layers=t.num_layers,
                          heads=t.num_heads, kv_heads=t.num_kv_heads, head_dim=t.hidden_size // t.num_heads,
                          vocab=len(load_tokenizer(m)), tied=True, source="model.tiny (tiny-random-llama)")
    if m.name_or_path == "smollm2-135m":
        # SmolLM2-135M's config (the embedded GGUF's): read once, stored here so planning loads nothing.
        return ModelShape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, head_dim=64, vocab=49152,
                          tied=True, source="smollm2-135m")
    local = Path(m.name_or_path) / "config.json"
    if local.is_file():
        return ModelShape.from_hf(json.loads(local.read_text()), str(local))
    raise ConfigError("--model-config", f"no shapes known for model.name_or_path={m.name_or_path!r}.",
                      "pass --model-config with its Hugging Face config.json.")


def module_specs(cfg, shape: ModelShape):
    """The ModuleSpecs hyperscale's injection would produce for `shape` (its own matching rules)."""
    from hyperscale.adapters.inject import ModuleSpec, _matches

    a = cfg.adapter
    keep = None if a.layers is None else {i + shape.layers if i < 0 else i for i in a.layers}
    specs = []
    for layer in range(shape.layers):
        if keep is not None and layer not in keep:
            continue
        for proj, (d_in, d_out) in shape.projections().items():
            group = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            name = f"layers.{layer}.{group}.{proj}"
            pattern = next((p for p in a.target_modules if _matches(name, p)), None)
            if pattern is not None:
                kind = pattern.removeprefix("re:")
                specs.append(ModuleSpec(name=name, kind=kind, layer=layer, d_in=d_in, d_out=d_out))
    if not specs:
        raise ConfigError("adapter.target_modules", f"{a.target_modules} match no projection of this model "
                          f"({', '.join(PROJECTIONS)}) in adapter.layers.", "use those names.")
    return specs


def trainable_count(cfg, shape: ModelShape, specs, perspectives: int, n_classes: int = 2) -> dict:
    """Trainable parameters of the kind's LoRA module and head, built on the meta device (no memory)."""
    import torch

    from hyperscale.adapters.kinds import get_kind

    class _Stub:  # what build_lora / build_head read of a backbone
        hidden_size, lm_head, is_encoder, tokenizer = shape.hidden, None, False, None

    kind = get_kind(cfg.adapter.kind)
    sizes = {f: perspectives for f in cfg.adapter.conditions if f != "instance"} or {"annotator": perspectives}
    refused = None
    with torch.device("meta"):
        try:
            lora = kind.build_lora(cfg, specs, sizes, _Stub(), n_classes)
        except ConfigError as e:  # per_annotator_lora's bound: report it, and count what it would need
            refused = str(e)
            from hyperscale.config import build_config
            from hyperscale.config.parse import to_dict

            lifted = build_config(to_dict(cfg), ["adapter.max_trainable_params=1000000000000000"])
            lora = kind.build_lora(lifted, specs, sizes, _Stub(), n_classes)
        head = kind.build_head(cfg, _Stub(), [str(i) for i in range(n_classes)], sizes) \
            if cfg.model.task == "classification" else None
    n_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    n_head = sum(p.numel() for p in head.parameters() if p.requires_grad) if head is not None else 0
    tables = sum(getattr(m, a).numel() for m, a in lora.annotator_tables())
    if head is not None:
        tables += sum(getattr(m, a).numel() for m, a in head.annotator_tables())
    return {"lora": n_lora, "head": n_head, "total": n_lora + n_head, "annotator_tables": tables,
            "refused_by_training": refused}


def _quantized_bytes(n: int, d_out: int, quant: str, dtype_bytes: int) -> float:
    if quant == "4bit":
        return n * 0.5 + n / NF4_BLOCK + 4 * n / (NF4_BLOCK * NF4_NESTED_BLOCK)
    if quant == "8bit":
        return n + 4 * d_out
    return n * dtype_bytes


def _zero_settings(cfg) -> dict:
    from hyperscale.training.engine import deepspeed_config

    z = deepspeed_config(cfg).get("zero_optimization", {})
    stage = z.get("stage", 0)
    return {"stage": stage, "offload": bool(z.get("offload_optimizer")),
            "reduce_bucket_size": int(float(z.get("reduce_bucket_size", DS_REDUCE_BUCKET))),
            "contiguous_gradients": bool(z.get("contiguous_gradients", True)),
            "overlap_comm": bool(z.get("overlap_comm", stage == 3))}


def predict(cfg, shape: ModelShape, *, perspectives: int, workers: int, batch: int, seq_len: int,
            device: str = "gpu", compute_dtype: str | None = None) -> dict:
    """Bytes per device for each term (module docstring), their sum, and host memory notes."""
    dtype = compute_dtype or (cfg.model.compute_dtype if cfg.model.compute_dtype != "auto" else "bfloat16")
    s = DTYPE_BYTES[dtype]
    quant, n = cfg.model.quantization, max(1, workers)
    zero = _zero_settings(cfg)
    stage = zero["stage"]
    projections = shape.projections()

    block_w = sum(_quantized_bytes(a * b, b, quant, s) for a, b in projections.values()) + 2 * shape.hidden * s
    dense = shape.vocab * shape.hidden * s + shape.hidden * s  # embeddings + final norm
    if cfg.model.task == "causal_lm" and not shape.tied:
        dense += shape.vocab * shape.hidden * s
    weights = shape.layers * block_w + dense
    if stage == 3:
        weights = weights / n + 2 * block_w  # one block gathered, one prefetched

    specs = module_specs(cfg, shape)
    counts = trainable_count(cfg, shape, specs, perspectives)
    t = counts["total"]
    trainable = 4 * t / (n if stage == 3 else 1)
    master = 4 * t / n if stage >= 1 else 0.0
    grads = 4 * t / (n if stage >= 2 else 1)
    bucket_elems = zero["reduce_bucket_size"] * (2 if zero["overlap_comm"] else 1)
    if stage == 0 or not zero["contiguous_gradients"]:
        buckets = 0.0
    else:
        buckets = 4 * (bucket_elems if device == "gpu" else min(bucket_elems, t))
    optimizer = 0.0 if zero["offload"] else 8 * t / (n if stage >= 1 else 1)
    if zero["offload"]:
        master = 0.0

    tokens = batch * seq_len
    first = min(sp.layer for sp in specs)
    grad_layers = shape.layers - first
    q = shape.heads * shape.head_dim
    per_token_block = 4 * shape.hidden + 5 * q + 4 * shape.intermediate  # elements kept per token per block
    rank_terms = sum(cfg.adapter.rank for sp in specs)  # A x, per adapted module
    if cfg.model.gradient_checkpointing:
        kept = grad_layers * shape.hidden + per_token_block
    else:
        kept = grad_layers * per_token_block
    activations = tokens * s * (kept + rank_terms + 2 * shape.hidden)
    largest = max(a * b for a, b in projections.values())
    # Backward's transients on top of what is kept: the gradients in flight through one block
    # (two of hidden size, two of MLP size per token) and the dequantized weight.
    workspace = (largest * s if quant != "none" else 0.0) + tokens * s * 2 * (shape.hidden + shape.intermediate)

    terms = {"weights": weights, "trainable": trainable, "master": master, "gradients": grads,
             "grad_buckets": buckets, "optimizer": optimizer, "activations": activations, "workspace": workspace}
    host = {"load_fp32_per_process": 4 * shape.n_params(),
            "offloaded_optimizer": (8 * t + 4 * t) / n if zero["offload"] else 0.0}
    return {"shape": asdict(shape), "n_params": shape.n_params(), "compute_dtype": dtype, "device": device,
            "quantization": quant, "workers": n, "zero": zero, "perspectives": perspectives, "batch": batch,
            "seq_len": seq_len, "gradient_checkpointing": cfg.model.gradient_checkpointing,
            "adapter": {"kind": cfg.adapter.kind, "rank": cfg.adapter.rank, "modules": len(specs),
                        "lowest_adapted_block": first, "blocks_with_activations": grad_layers},
            "trainable_params": counts, "bytes": terms, "total_bytes": sum(terms.values()), "host_bytes": host}


# ---------------------------------------------------------------- measurement

def _rss(key: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{key} not in /proc/self/status")


def tensors_from_mmap(threshold: int = 128 * 1024) -> bool:
    """glibc: serve every allocation of `threshold` bytes or more by mmap, returned to the OS on free.

    glibc raises its mmap threshold after the first large free (up to 32 MiB), after which freed
    activations stay in the heap and RSS follows fragmentation rather than live tensors. Fixing the
    threshold makes a CPU process's peak RSS track its live tensors (what the plan predicts)."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def release_freed() -> None:
    """Hand memory the process already freed back to the OS (glibc malloc_trim), so RSS counts what is in use.

    Measured on SmolLM2-135M: loading its GGUF frees ~0.7 GiB of tensors under glibc's mmap threshold,
    which the heap keeps resident (RSS 0.85 GiB once built, against ~0.16 GiB of live weights)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then includes the allocator's cache
        pass


def _preload(cfg) -> None:
    """Import what loading and building import lazily, and read the tokenizer once, so the measured
    delta is the model's: measured here, these cost ~0.3 GiB of RSS (transformers' model classes
    0.19, bitsandbytes 0.05, the tokenizer 0.05), the same for every model size."""
    import bitsandbytes  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401

    from hyperscale.backbones.load import load_tokenizer

    if cfg.model.name_or_path == "smollm2-135m" or cfg.model.gguf_file:
        import gguf  # noqa: F401
    load_tokenizer(cfg.model)


def measure(cfg, *, perspectives: int, batch: int, seq_len: int, steps: int = 2) -> dict:
    """Peak memory of real optimizer steps: the model from hyperscale's builder, DeepSpeed's engine."""
    import gc

    import deepspeed  # noqa: F401 -- the libraries' own footprint is outside the measured delta
    import torch

    from hyperscale.backbones.load import load_backbone
    from hyperscale.bench.train import Setting, make_batch
    from hyperscale.model import build_model
    from hyperscale.training.distributed import setup_distributed
    from hyperscale.training.engine import build_engine

    ctx = setup_distributed(cfg.distributed.use_gpu)
    cuda = ctx.device.type == "cuda"
    mmap_fixed = False if cuda else tensors_from_mmap()
    _preload(cfg)  # libraries and the tokenizer: a per-process constant (~0.3 GiB on CPU), not a planned term
    gc.collect()
    release_freed()
    base = torch.cuda.memory_allocated() if cuda else _rss()
    if not cuda:
        Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    backbone = load_backbone(cfg.model, device=ctx.device, rows=batch * seq_len)
    load_peak = (torch.cuda.max_memory_allocated() if cuda else _rss("VmHWM")) - base
    torch.manual_seed(0)
    model = build_model(cfg, {"annotator": perspectives}, ["0", "1"], backbone, device=ctx.device).to(ctx.device)
    engine, _, _ = build_engine(model, cfg)
    engine.train()
    gc.collect()
    release_freed()
    built = (torch.cuda.memory_allocated() if cuda else _rss()) - base
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")
    setting = Setting(perspectives=perspectives, conditions=min(batch, perspectives), seq_len=seq_len, batch=batch,
                      rank=cfg.adapter.rank)
    for i in range(steps):
        b = make_batch(setting, len(backbone.tokenizer), 2, seed=i, device=ctx.device)
        loss = engine(b)["loss"]
        engine.backward(loss)
        engine.step()
    peak = (torch.cuda.max_memory_allocated() if cuda else _rss("VmHWM")) - base
    after = (torch.cuda.memory_allocated() if cuda else _rss()) - base
    return {"method": "torch.cuda.max_memory_allocated" if cuda else
            ("VmHWM (peak RSS, reset via /proc/self/clear_refs) minus VmRSS before the backbone loaded"
             + ("; glibc mmap threshold fixed at 128 KiB" if mmap_fixed else "")),
            "device": str(ctx.device), "compute_dtype": backbone.dtype_choice.dtype,
            "load_peak_bytes": load_peak, "built_bytes": built, "after_steps_bytes": after,
            "step_peak_bytes": peak, "steps": steps, "n_trainable": model.n_trainable(),
            "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------- report and CLI

def _gib(x: float) -> str:
    return f"{x / GIB:.3f}" if x < 10 * GIB else f"{x / GIB:.1f}"


def text_report(plan: dict, measured: dict | None = None, gpu_gib: float | None = None) -> str:
    sh = plan["shape"]
    z = plan["zero"]
    lines = [(f"model: {sh['source'] or 'config'}: {plan['n_params'] / 1e9:.3f} B params, hidden {sh['hidden']}, "
              f"intermediate {sh['intermediate']}, {sh['layers']} layers, {sh['heads']}/{sh['kv_heads']} heads, "
              f"vocab {sh['vocab']}"),
             (f"run: {plan['quantization']} weights, {plan['compute_dtype']} compute, {plan['adapter']['kind']} "
             f"r={plan['adapter']['rank']} on {plan['adapter']['modules']} modules (activations kept in "
             f"{plan['adapter']['blocks_with_activations']} blocks), {plan['perspectives']:,} perspectives, "
             f"batch {plan['batch']} x {plan['seq_len']} tokens, checkpointing "
             f"{'on' if plan['gradient_checkpointing'] else 'off'}"),
             f"ZeRO stage {z['stage']}{' + optimizer offload' if z['offload'] else ''}, {plan['workers']} worker(s), "
             f"{plan['device']}; trainable params {plan['trainable_params']['total']:,}"
             + (f" (training would refuse: {plan['trainable_params']['refused_by_training'][:100]}...)"
                if plan["trainable_params"]["refused_by_training"] else ""),
             "", f"{'term':<14}{'GiB per device':>16}" + (f"{'measured':>12}" if measured else "")]
    for k, v in plan["bytes"].items():
        lines.append(f"{k:<14}{_gib(v):>16}")
    lines.append(f"{'total':<14}{_gib(plan['total_bytes']):>16}"
                 + (f"{_gib(measured['step_peak_bytes']):>12}" if measured else ""))
    if measured:
        err = plan["total_bytes"] / measured["step_peak_bytes"] - 1
        lines.append(f"prediction / measurement - 1 = {100 * err:+.1f}% (peak of {measured['steps']} optimizer steps; "
                     f"{measured['method']})")
        lines.append(f"(measured also: {_gib(measured['load_peak_bytes'])} GiB peak while loading, "
                     f"{_gib(measured['built_bytes'])} GiB resident once built)")
    if gpu_gib:
        fits = plan["total_bytes"] <= gpu_gib * GIB
        lines.append(f"fits on {gpu_gib:g} GiB per device: {'yes' if fits else 'NO'} "
                     f"({100 * plan['total_bytes'] / (gpu_gib * GIB):.0f}% used)")
    lines.append(f"host: loading reads the backbone in fp32 before quantizing: "
                 f"{_gib(plan['host_bytes']['load_fp32_per_process'])} GiB per worker process"
                 + (f"; offloaded optimizer {_gib(plan['host_bytes']['offloaded_optimizer'])} GiB per worker"
                    if plan['host_bytes']['offloaded_optimizer'] else ""))
    return "\n".join(lines)


def _parse(argv):
    p = argparse.ArgumentParser(prog="hyperscale bench memory", description=__doc__.split("\n")[0])
    p.add_argument("config", help="YAML run config (quantization, adapter, batch, ZeRO stage, ...)")
    p.add_argument("--model-config", help="a Hugging Face config.json giving the backbone's shapes "
                   "(e.g. configs/models/llama-3-8b.json); default: the config's own backbone")
    p.add_argument("--workers", type=int, help="devices (default: distributed.num_workers)")
    p.add_argument("--perspectives", type=int, default=1000, help="annotator vocabulary size (default: %(default)s)")
    p.add_argument("--batch", type=int, help="rows per micro-batch (default: train.micro_batch_size)")
    p.add_argument("--seq-len", type=int, help="tokens per row (default: model.max_length)")
    p.add_argument("--device", choices=("gpu", "cpu"), default=None,
                   help="where it runs (GPU: DeepSpeed's gradient bucket is allocated whole); default: gpu, or "
                        "where --measure runs")
    p.add_argument("--gpu-gib", type=float, help="per-device memory to check the total against, e.g. 80")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--measure", action="store_true", help="also build the model and measure the peak of real steps "
                   "(needs the config's backbone; for 8B shapes use tiny-random-llama with model.tiny.* set)")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps measured (default: %(default)s)")
    p.add_argument("--out", help="write the plan (and measurement) as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from hyperscale.config import load_config

    # --workers is the plan's world size: distributed.zero_stage=auto resolves for it
    cfg = load_config(args.config, [*args.overrides, *([f"distributed.num_workers={args.workers}"] if args.workers
                                                        else [])])
    workers = cfg.distributed.num_workers
    batch, seq_len = args.batch or cfg.train.micro_batch_size, args.seq_len or cfg.model.max_length
    shape = shape_for(cfg, args.model_config)
    measured = None
    if args.measure:
        if args.model_config:
            raise ConfigError("--measure", "measures the config's own backbone, not --model-config's shapes.",
                              "drop --model-config, and give the shapes as model.tiny.* of tiny-random-llama.")
        if workers != 1:
            raise ConfigError("--measure", f"measures one process; --workers is {workers}.", "use --workers 1.")
        measured = measure(cfg, perspectives=args.perspectives, batch=batch, seq_len=seq_len, steps=args.steps)
    device = args.device or ((("gpu" if measured["device"].startswith("cuda") else "cpu")) if measured else "gpu")
    dtype = measured["compute_dtype"] if measured else None
    plan = predict(cfg, shape, perspectives=args.perspectives, workers=workers, batch=batch, seq_len=seq_len,
                   device=device, compute_dtype=dtype)
    print(text_report(plan, measured, args.gpu_gib))
    if args.out:
        out = {"config": args.config, "overrides": args.overrides, "plan": plan, "measured": measured}
        if measured:
            out["prediction_error"] = plan["total_bytes"] / measured["step_peak_bytes"] - 1
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
