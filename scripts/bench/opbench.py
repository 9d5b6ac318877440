import os, sys, time, statistics, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")); torch.set_num_threads(1)
from hyperscale.ops import reference as R
counts = [2,1,2,2,1,1,2,1,1,1,1,1]
T = int(sys.argv[1]); d_in = int(sys.argv[2]); d_out = int(sys.argv[3])
seq_idx = torch.tensor([u for u, c in enumerate(counts) for _ in range(c)])[torch.randperm(16)]
idx = seq_idx.repeat_interleave(T)
U, N, r = len(counts), idx.shape[0], 2
x = torch.randn(N, d_in, requires_grad=True); base = torch.randn(N, d_out, requires_grad=True)
A = torch.randn(U, r, d_in, requires_grad=True); B = torch.randn(U, d_out, r, requires_grad=True)
dy = torch.randn(N, d_out)
def run(pad):
    R.MAX_PADDING = pad
    t0 = time.process_time()
    seg = R.plan_segments(idx, U)
    out = R.torch_lowrank_update(base, x, A, B, idx, 0.5, seg)
    out.backward(dy)
    return time.process_time() - t0
t = {1e9: [], 0.0: []}
for i in range(60):
    for p in t: t[p].append(run(p))
print(f"T={T} d_in={d_in} d_out={d_out}: grid {1e3*statistics.median(t[1e9][10:]):.3f} ms, loop {1e3*statistics.median(t[0.0][10:]):.3f} ms")
