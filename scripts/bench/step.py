"""Interleaved step timing: hyper_lora vs shared_lora, tiny fp32 llama, DeepSpeed engine (zero 0)."""
import os, sys, time, json, statistics
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("WANDB_MODE", "offline")
sys.path.insert(0, os.environ.get("ROOT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
import torch
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from tests.helpers import tiny_config, make_batch
from hyperscale.model import build_model
from hyperscale.training.engine import build_engine
from hyperscale.training.distributed import setup_distributed

setup_distributed(False)
model_name = os.environ.get("MODEL", "tiny")
extra = os.environ.get("EXTRA", "").split() if os.environ.get("EXTRA") else []
def make(kind, n_ann=16):
    if model_name == "tiny":
        cfg = tiny_config(f"adapter.kind={kind}", "distributed.zero_stage=0", *extra)
    else:
        from hyperscale.config import build_config
        cfg = build_config({"data": {"source": "synthetic"}, "model": {"name_or_path": "smollm2-135m", "max_length": 64,
              "compute_dtype": "float32", "quantization": "4bit"}, "train": {"progress_bar": False}},
              ["adapter.target_modules=[q_proj,v_proj]", "adapter.rank=2", "adapter.layers=[-8,-7,-6,-5,-4,-3,-2,-1]",
               f"adapter.kind={kind}", "distributed.zero_stage=0", *extra])
    torch.manual_seed(0)
    m = build_model(cfg, {"annotator": n_ann}, ["0", "1"])
    eng, _, _ = build_engine(m, cfg)
    return eng, cfg
kinds = os.environ.get("KINDS", "hyper_lora shared_lora").split()
engines = {k: make(k)[0] for k in kinds}
seq = int(os.environ.get("SEQ", "32"))
batch = make_batch(n=16, seq=seq, vocab=1000, n_annotators=16, seed=1)
clock = time.process_time if os.environ.get("CLOCK") == "cpu" else time.perf_counter
def step(eng):
    t0 = clock()
    loss = eng(batch)["loss"]; eng.backward(loss); eng.step()
    return clock() - t0
if os.environ.get("PROFILE") == "diff":
    from torch.profiler import profile, ProfilerActivity
    tot = {}
    for k in kinds:
        for _ in range(3): step(engines[k])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10): step(engines[k])
        tot[k] = {e.key: (e.self_cpu_time_total / 10, e.count // 10) for e in prof.key_averages()}
    keys = set(tot[kinds[0]]) | set(tot[kinds[1]])
    rows = sorted(keys, key=lambda n: -(tot[kinds[0]].get(n, (0, 0))[0] - tot[kinds[1]].get(n, (0, 0))[0]))
    print("total us", {k: sum(v[0] for v in tot[k].values()) for k in kinds})
    for n in rows[:30]:
        a, b = tot[kinds[0]].get(n, (0, 0)), tot[kinds[1]].get(n, (0, 0))
        print(f"{n[:50]:50s} {a[0]:9.0f} {a[1]:5d} {b[0]:9.0f} {b[1]:5d}")
    sys.exit()
if os.environ.get("PROFILE"):
    k = os.environ["PROFILE"]
    for _ in range(3): step(engines[k])
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5): step(engines[k])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=35))
    sys.exit()
reps = int(os.environ.get("REPS", "7")); inner = int(os.environ.get("INNER", "5"))
for k in kinds:
    for _ in range(3): step(engines[k])
times = {k: [] for k in kinds}
for r in range(reps):
    for k in (kinds if r % 2 == 0 else kinds[::-1]):
        times[k].append(statistics.median(step(engines[k]) for _ in range(inner)))
res = {k: statistics.median(v) for k, v in times.items()}
ratio = [a / b for a, b in zip(times[kinds[0]], times[kinds[1]])]
print(json.dumps({"median_s": res, "ratio_median": statistics.median(ratio), "ratio_range": [min(ratio), max(ratio)],
                  "threads": torch.get_num_threads(), "model": model_name, "clock": os.environ.get("CLOCK", "wall")}))
