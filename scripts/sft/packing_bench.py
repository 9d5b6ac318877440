"""train.packing against padding on real rows: body tokens, loss equality and step cost (CPU time).

The demo's pipa_toxicity rows as sft (verbalized labels), SmolLM2-135M cut to its first 4 blocks in
float32, hyper_lora per annotator; for each model.max_length, the same micro-batches of 8 rows run
forward + backward padded and packed, interleaved (padded, packed, padded, ...), one torch thread,
timed by this process's CPU time (the CPU is shared with other jobs: wall time would measure them).
Writes JSON and a PNG.

    python scripts/sft/packing_bench.py --out docs/sft   # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/sft")
    p.add_argument("--lengths", default="48,128,256")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(1)

    from hyperscale.backbones.load import load_backbone
    from hyperscale.config import load_config
    from hyperscale.data.batches import EpochSampler, collate
    from hyperscale.data.load import load_data
    from hyperscale.data.packing import collate_packed
    from hyperscale.data.sft import encode_sft
    from hyperscale.model import build_model

    results = {"threads": 1, "clock": "process CPU time", "rows_per_batch": 8, "batches": a.batches, "reps": a.reps,
               "model": "smollm2-135m, first 4 blocks, float32, hyper_lora r=2 on q/v", "by_max_length": {}}
    for L in (int(x) for x in a.lengths.split(",")):
        cfg = load_config("configs/demo.yaml", ["model.task=sft", "model.verbalizers=[not toxic, toxic]",
                                                f"model.max_length={L}", "model.num_layers=4", "model.quantization=none",
                                                "model.compute_dtype=float32", "adapter.layers=null"])
        data = load_data(cfg.data, task="sft")
        vocab = data.condition_vocab()
        torch.manual_seed(0)
        backbone = load_backbone(cfg.model)
        tok = backbone.tokenizer
        model = build_model(cfg, {"annotator": vocab.size("annotator")}, data.labels, backbone)
        with torch.no_grad():  # B starts at zero: give the adapters values so the check is not trivial
            for name, prm in model.named_parameters():
                if "head_b" in name:
                    prm.normal_(0, 0.02)
        rows, fit = encode_sft(data.train, tok, vocab, data.labels, ["annotator"], max_length=L,
                               template=cfg.model.prompt_template, verbalizers=cfg.model.verbalizers, chat=False,
                               overflow="truncate")
        sampler = EpochSampler(len(rows), 8, 0)
        batches = [sampler.next_batch() for _ in range(a.batches)]
        times = {"padded": [], "packed": []}
        tokens = {"padded": 0, "packed": 0, "real": 0}
        max_diff = 0.0
        for _rep in range(a.reps):
            for r in batches:
                losses = {}
                for how in ("padded", "packed"):
                    batch = collate(rows, r, tok.pad_token_id) if how == "padded" else \
                        collate_packed(rows, r, tok.pad_token_id, L)
                    model.zero_grad()
                    t0 = time.process_time()
                    loss = model(batch)["loss"]
                    loss.backward()
                    times[how].append(time.process_time() - t0)
                    losses[how] = loss.item()
                    if _rep == 0:
                        tokens[how] += batch["input_ids"].numel()
                        tokens["real"] += int(batch["attention_mask"].sum()) if how == "padded" else 0
                max_diff = max(max_diff, abs(losses["padded"] - losses["packed"]))
        per = {k: float(np.sum(v)) for k, v in times.items()}
        results["by_max_length"][str(L)] = {
            "truncated_train_rows": fit.n_truncated, "train_rows": len(rows),
            "real_tokens_per_batch": tokens["real"] / a.batches, "padded_tokens_per_batch": tokens["padded"] / a.batches,
            "packed_tokens_per_batch": tokens["packed"] / a.batches,
            "cpu_s_padded": per["padded"], "cpu_s_packed": per["packed"],
            "packed_over_padded_cpu": per["packed"] / per["padded"], "max_abs_loss_diff": max_diff}
        print(L, json.dumps(results["by_max_length"][str(L)]), flush=True)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "packing_bench.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "packing_bench.png")
    print(f"wrote {out / 'packing_bench.json'} and {out / 'packing_bench.png'}")
    return 0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = results["by_max_length"]
    Ls = list(by)
    x = np.arange(len(Ls))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for j, (key, label) in enumerate((("real_tokens_per_batch", "real tokens"),
                                      ("padded_tokens_per_batch", "padded"), ("packed_tokens_per_batch", "packed"))):
        ax1.bar(x + (j - 1) * 0.27, [by[L][key] for L in Ls], 0.27, label=label)
    ax1.set_xticks(x, Ls)
    ax1.set_xlabel("model.max_length")
    ax1.set_ylabel("tokens through the body, per 8 rows")
    ax1.legend(fontsize=8)
    ax2.bar(x, [by[L]["packed_over_padded_cpu"] for L in Ls], 0.5, color="tab:green")
    ax2.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax2.set_xticks(x, Ls)
    ax2.set_xlabel("model.max_length")
    ax2.set_ylabel("CPU time, packed / padded")
    ax2.set_title("forward + backward, same rows", fontsize=9)
    fig.suptitle("train.packing on pipa_toxicity sft rows (SmolLM2-135M, 4 blocks, fp32, 1 thread)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
