"""Where shared_lora's step exceeds peft's LoRA step (issue 12): the engine or the adapter op.

  python scripts/bench/attribution.py CONFIG [--rounds 15] [--warmup 2] [--out FILE.json]

Four runners on copies of one loaded backbone, timed interleaved with the process's CPU clock
at 1 torch thread (hyperscale.bench.variants: the same Runner, batches and clock as
`hyperscale bench train`):
  peft_lora            peft's LoRA + plain torch AdamW (what a user writes)
  shared_zero2         hyperscale shared_lora through the DeepSpeed engine, ZeRO-2 (the default)
  shared_zero0         the same through the DeepSpeed engine at ZeRO-0
  shared_plain         the same model with peft's loop: plain torch AdamW, no DeepSpeed
shared_plain / peft isolates hyperscale's adapter path (wrapped layers + batched op), the
others add DeepSpeed's engine. Ratios are per round, median [min-max].
"""
import argparse
import json
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import torch

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--rounds", type=int, default=15)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--out")
args = p.parse_args()
torch.set_num_threads(1)

from hyperscale.backbones.load import load_backbone
from hyperscale.bench.train import Setting, make_batch
from hyperscale.bench.variants import Runner, _Clock, build_runner
from hyperscale.config import build_config, load_config
from hyperscale.config.parse import to_dict
from hyperscale.training.distributed import setup_distributed

setup_distributed(False)
cfg = load_config(args.config, [])
backbone = load_backbone(cfg.model, device="cpu")
labels, cpu = ["0", "1"], torch.device("cpu")
runners = {"peft_lora": build_runner("peft_lora", cfg, backbone, 16, cfg.adapter.rank, labels, cpu, "cpu"),
           "shared_zero2": build_runner("shared_lora", build_config(to_dict(cfg), ["distributed.zero_stage=2"]),
                                        backbone, 16, cfg.adapter.rank, labels, cpu, "cpu"),
           "shared_zero0": build_runner("shared_lora", build_config(to_dict(cfg), ["distributed.zero_stage=0"]),
                                        backbone, 16, cfg.adapter.rank, labels, cpu, "cpu")}
plain = build_runner("shared_lora", cfg, backbone, 16, cfg.adapter.rank, labels, cpu, "cpu")
module = plain.module
params = [q for q in module.parameters() if q.requires_grad]
runners["shared_plain"] = Runner("shared_plain", module, _Clock(cpu, "cpu"), module.lora,
                                 optimizer=torch.optim.AdamW(params, lr=cfg.train.lr,
                                                             weight_decay=cfg.train.weight_decay),
                                 max_grad_norm=cfg.train.max_grad_norm)
vocab = backbone.body.get_input_embeddings().weight.shape[0]
setting = Setting(perspectives=16, conditions=16, seq_len=cfg.model.max_length, batch=16, rank=cfg.adapter.rank)
times = {k: [] for k in runners}
for r in range(args.warmup + args.rounds):
    batch = make_batch(setting, vocab, len(labels), 1000 + r, "cpu")
    for name, runner in runners.items():
        t = runner.step(batch)
        if r >= args.warmup:
            times[name].append(t)
    print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]['step'] * 1e3:.1f}ms" for k, v in times.items() if v), flush=True)


def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


out = {"config": args.config, "rounds": args.rounds, "warmup": args.warmup, "threads": 1,
       "clock": "time.process_time", "load_average": os.getloadavg(), "phases_ms": {}, "ratios": {}}
for name, ts in times.items():
    out["phases_ms"][name] = {ph: round(1e3 * statistics.median(t[ph] for t in ts), 2)
                              for ph in ("forward", "backward", "optimizer", "step")}
for a, b in [("shared_plain", "peft_lora"), ("shared_zero0", "peft_lora"), ("shared_zero2", "peft_lora"),
             ("shared_zero0", "shared_plain"), ("shared_zero2", "shared_plain")]:
    out["ratios"][f"{a} / {b}"] = summary([x["step"] / y["step"] for x, y in zip(times[a], times[b])])
print(json.dumps(out, indent=1))
if args.out:
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
