"""`model.compute_dtype: auto`: the backbone's compute dtype, chosen by measurement on this machine.

Why measure instead of assuming: bfloat16 was 3-8x faster than float32 through
bitsandbytes' 4-bit CPU path on a machine with AVX-512 BF16, and ~25x slower on
one without it (a 16-row SmolLM2 step 393 s in bf16 against 8-16 s in fp32; the
same-shape bf16 matmul 2,162 ms against 35.5 ms), because without the ISA the
bf16 matmul falls back to a slow path. The CPU's flags are a hint, not an answer
(the speed also depends on the torch / bitsandbytes builds), so on a CPU the
choice is a short probe at the backbone's own shapes:

    the MLP projection (hidden -> intermediate) as the run will compute it
    (plain Linear, or bitsandbytes 4-bit / 8-bit), micro_batch_size x max_length
    rows, forward + backward to the input (what a frozen layer costs in training),
    float32 against bfloat16, median of a few repetitions after a warm-up.

bfloat16 is chosen only when it is at least 20% faster (its rounding is not free);
the result is cached per (CPU, flags, threads, library versions, quantization,
shape, rows) in $HYPERSCALE_CACHE/compute_dtype.json, so the probe runs once per
machine and shape. On CUDA: bfloat16 where the GPU supports it, else float16.
The choice and its reason are printed and recorded in the run's `runtime:`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hyperscale.backbones.embedded import TOKENIZER_CACHE as CACHE_DIR

CACHE_FILE = "compute_dtype.json"
BF16_MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this factor to be chosen on a CPU
REPS = 3
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass
class DtypeChoice:
    dtype: str  # float32 / bfloat16 / float16
    reason: str
    probe_ms: dict | None = None  # {dtype: median ms of one forward + backward of the probe layer}


def cpu_description() -> dict:
    """The CPU model name and the flags that decide bf16 speed (Linux /proc/cpuinfo; else the platform)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                if flags and name:
                    break
    except OSError:
        pass
    return {"model": name, "flags": [f for f in CPU_FLAGS if f in flags]}


def resolve_compute_dtype(model_cfg, device: torch.device | str, shape: tuple[int, int], rows: int) -> DtypeChoice:
    """`model_cfg.compute_dtype` as a concrete dtype (see the module docstring)."""
    if model_cfg.compute_dtype != "auto":
        return DtypeChoice(model_cfg.compute_dtype, "set in the config (model.compute_dtype)")
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", f"CUDA device {torch.cuda.get_device_name(device)} supports bfloat16")
        return DtypeChoice("float16", f"CUDA device {torch.cuda.get_device_name(device)} lacks bfloat16")
    key = _cache_key(model_cfg.quantization, shape, rows)
    cache = _read_cache()
    if key in cache:
        hit = cache[key]
        return DtypeChoice(hit["dtype"], hit["reason"] + " (cached)", hit["probe_ms"])
    choice = _probe(model_cfg.quantization, shape, rows)
    cache[key] = asdict(choice)
    _write_cache(cache)
    return choice


def _cache_key(quantization: str, shape: tuple[int, int], rows: int) -> str:
    import importlib.metadata

    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    cpu = cpu_description()
    return "|".join([cpu["model"], ",".join(cpu["flags"]), f"threads={torch.get_num_threads()}",
                     f"torch={torch.__version__}", f"bitsandbytes={version('bitsandbytes')}", quantization,
                     f"{shape[0]}x{shape[1]}", f"rows={rows}"])


def _cache_path() -> Path:
    return Path(os.environ.get("HYPERSCALE_CACHE", CACHE_DIR)) / CACHE_FILE


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # none yet, or a torn file: measure again
        return {}


def _write_cache(cache: dict) -> None:
    from hyperscale.rundir import write_atomic

    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cache, indent=1))
    except OSError:  # a read-only home: the choice still holds for this run, it is just not remembered
        pass


def _probe_layer(quantization: str, shape: tuple[int, int], dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    lin = torch.nn.Linear(*shape, bias=False)
    lin.weight.requires_grad_(False)
    if quantization == "none":
        return lin.to(dtype)
    from hyperscale.backbones.quantize import QUANTIZERS

    return QUANTIZERS[quantization](lin, dtype)


def time_forward_backward(layer: torch.nn.Module, x: torch.Tensor, reps: int = REPS) -> float:
    """Median ms of forward + backward to the input, after one warm-up."""
    times = []
    for i in range(reps + 1):
        xi = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        layer(xi).float().sum().backward()
        if i:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _probe(quantization: str, shape: tuple[int, int], rows: int) -> DtypeChoice:
    ms = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        layer = _probe_layer(quantization, shape, dtype)
        x = torch.randn(rows, shape[0], generator=torch.Generator().manual_seed(0)).to(dtype)
        ms[name] = time_forward_backward(layer, x)
    what = f"{quantization if quantization != 'none' else 'unquantized'} {shape[0]}x{shape[1]} layer, {rows} rows"
    measured = f"measured on this CPU, forward+backward of one {what}: bfloat16 {ms['bfloat16']:.1f} ms, " \
               f"float32 {ms['float32']:.1f} ms"
    if ms["float32"] >= BF16_MIN_SPEEDUP * ms["bfloat16"]:
        return DtypeChoice("bfloat16", f"{measured} (bfloat16 {ms['float32'] / ms['bfloat16']:.1f}x faster)", ms)
    return DtypeChoice("float32", f"{measured} (bfloat16 not {BF16_MIN_SPEEDUP}x faster)", ms)
