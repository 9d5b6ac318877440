"""Gradient checkpointing on/off in one process: bytes saved for backward (activation memory) and step time, interleaved."""
import os, sys, time, statistics, json
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import torch
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from tests.helpers import tiny_config, make_batch
from hyperscale.model import build_model
SMALL = ["model.tiny.hidden_size=256", "model.tiny.intermediate_size=768", "model.tiny.num_layers=6",
         "model.tiny.num_heads=8", "model.tiny.num_kv_heads=4", "model.max_length=256"]
kind, seq, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
models = {}
for gc in (False, True):
    cfg = tiny_config(f"adapter.kind={kind}", f"model.gradient_checkpointing={str(gc).lower()}", *SMALL)
    torch.manual_seed(0)
    m = build_model(cfg, {"annotator": 16}, ["0", "1"]); m.train()
    models[gc] = (m, torch.optim.AdamW(m.trainable_parameters(), lr=1e-3))
batch = make_batch(n=16, seq=seq, n_annotators=16, seed=1)
batch["attention_mask"][:] = 1
def saved_bytes(m):
    seen = {}
    def pack(t):
        seen[(t.data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size() if t.device.type != "meta" else 0
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = m(batch)["loss"]
    loss.backward()
    m.zero_grad()
    return sum(seen.values())
def step(m, opt):
    t0 = time.perf_counter(); m(batch)["loss"].backward(); opt.step(); opt.zero_grad(); return time.perf_counter() - t0
mem = {gc: saved_bytes(models[gc][0]) for gc in models}
for gc in models: step(*models[gc])
times = {False: [], True: []}
for r in range(reps):
    for gc in ((False, True) if r % 2 == 0 else (True, False)):
        times[gc].append(step(*models[gc]))
ratio = [a / b for a, b in zip(times[True], times[False])]
print(json.dumps({"kind": kind, "tokens_per_step": 16 * seq, "threads": torch.get_num_threads(),
                  "saved_for_backward_mib": {("on" if k else "off"): v / 2**20 for k, v in mem.items()},
                  "step_s_median": {("on" if k else "off"): statistics.median(v) for k, v in times.items()},
                  "time_ratio_on_over_off_median": statistics.median(ratio), "ratio_range": [min(ratio), max(ratio)]}))
