"""Per-op CPU profile of bench variants, side by side (issue 12): where one variant's step spends what another's does not.

  python scripts/bench/profile_variants.py CONFIG VARIANT_A VARIANT_B [--steps N] [--threads 1] [--out FILE.json]

Builds both with hyperscale.bench.variants.build_runner on one loaded backbone (exactly what
`hyperscale bench train` times), warms each up, then profiles N steps of each with
torch.profiler (CPU) and prints the ops whose self CPU time differs most (ms per step).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import torch

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("a")
p.add_argument("b")
p.add_argument("--steps", type=int, default=10)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--perspectives", type=int, default=16)
p.add_argument("--top", type=int, default=25)
p.add_argument("--out")
args = p.parse_args()
torch.set_num_threads(args.threads)

from hyperscale.backbones.load import load_backbone
from hyperscale.bench.train import Setting, make_batch
from hyperscale.bench.variants import build_runner
from hyperscale.config import load_config
from hyperscale.training.distributed import setup_distributed

setup_distributed(False)
cfg = load_config(args.config, [])
backbone = load_backbone(cfg.model, device="cpu")
labels = ["0", "1"]
runners = {v: build_runner(v, cfg, backbone, args.perspectives, cfg.adapter.rank, labels, torch.device("cpu"), "cpu")
           for v in (args.a, args.b)}
setting = Setting(perspectives=args.perspectives, conditions=16, seq_len=cfg.model.max_length, batch=16,
                  rank=cfg.adapter.rank)
vocab = backbone.body.get_input_embeddings().weight.shape[0]
batch = make_batch(setting, vocab, len(labels), 0, "cpu")
from torch.profiler import ProfilerActivity, profile

per_op = {}
for v, r in runners.items():
    for _ in range(3):
        r.step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            r.step(batch)
    per_op[v] = {e.key: (e.self_cpu_time_total / 1000 / args.steps, e.count / args.steps)
                 for e in prof.key_averages()}
    print(f"{v}: self CPU {sum(t for t, _ in per_op[v].values()):.2f} ms/step over {len(per_op[v])} op kinds, "
          f"{sum(c for _, c in per_op[v].values()):.0f} op calls/step")
keys = set(per_op[args.a]) | set(per_op[args.b])
rows = sorted(((per_op[args.a].get(k, (0, 0)), per_op[args.b].get(k, (0, 0)), k) for k in keys),
              key=lambda x: -abs(x[0][0] - x[1][0]))
print(f"{'op':48s} {args.a + ' ms':>16s} {args.b + ' ms':>16s} {'calls a':>8s} {'calls b':>8s}")
for (ta, ca), (tb, cb), k in rows[: args.top]:
    print(f"{k[:48]:48s} {ta:16.3f} {tb:16.3f} {ca:8.0f} {cb:8.0f}")
if args.out:
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "steps": args.steps, "threads": args.threads, "per_op_ms_calls": per_op},
                  f, indent=1)
