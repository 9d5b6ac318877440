"""Issue 13 measurements: export sizes/times and predict-from-file times on a demo-config run (shared 2-core CPU)."""
import json, sys, time, shutil
from pathlib import Path
import numpy as np, pandas as pd, torch
torch.set_num_threads(2)
run_dir, out = Path(sys.argv[1]), Path("/tmp/i13_measure")
from hyperscale.serve.export import export
from hyperscale.serve.predict import Predictor
from hyperscale.serve.corpus import predict_file
N_TEXTS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
res = {"threads": 2, "run_dir": str(run_dir), "note": "2-core CPU shared with 3 other agents' jobs: times are noisy"}
t = time.perf_counter(); s = export(run_dir, out / "export_all", "all"); res["export_all_s_incl_load"] = time.perf_counter() - t
res["export_all_write_s"] = s["seconds"]; res["n_adapters"] = s["n_adapters"]
res["adapter_bytes"] = sorted({a["bytes"] for a in s["adapters"]})
d = out / "export_all" / s["adapters"][0]["dir"]
res["dir_bytes"] = {p.name: p.stat().st_size for p in d.iterdir()}
res["task_type"] = s["task_type"]
(out / "partial.json").write_text(json.dumps(res, indent=1))
t = time.perf_counter(); s3 = export(run_dir, out / "export_3", s["condition_vocab"]["annotator"][:3]); res["export_3_s_incl_load"] = time.perf_counter() - t
pred = Predictor.from_run(run_dir)
words = "the old road was closed again what a lovely quiet garden you are all idiots and nobody cares".split()
rng = np.random.default_rng(0)
corpus = pd.DataFrame({"id": [f"d{i}" for i in range(N_TEXTS)], "text": [" ".join(rng.choice(words, 10)) for _ in range(N_TEXTS)]})
corpus.to_parquet(out / "corpus.parquet")
for ann in ("all", ",".join(s["condition_vocab"]["annotator"][:3])):
    o = out / f"pred_{'all' if ann == 'all' else '3'}.parquet"
    o.unlink(missing_ok=True)
    t = time.perf_counter(); r = predict_file(pred, out / "corpus.parquet", o, ann, progress=True, pairs_per_part=256); dt = time.perf_counter() - t
    res[f"predict_file_{'all' if ann == 'all' else '3'}"] = {"texts": r["texts"], "annotators": r["annotators"], "rows": r["rows"], "seconds": dt, "pairs_per_s": r["rows"] / dt, "out_bytes": o.stat().st_size}
print(json.dumps(res, indent=1))
(out / "measure.json").write_text(json.dumps(res, indent=1))
