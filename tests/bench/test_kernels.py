"""`hyperscale bench kernels --quick` runs on CPU and writes the JSON fields its readers use."""

from __future__ import annotations

import json

from hyperscale.bench.kernels import IMPLS, main


def test_bench_quick_writes_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"device", "cuda", "triton_mode", "dtype", "timer", "copy_bandwidth_GBps", "results"} <= report.keys()
    assert report["copy_bandwidth_GBps"] > 0
    rows = report["results"]
    assert {r["impl"] for r in rows} == set(IMPLS)
    assert {r["pass"] for r in rows} == {"fwd", "fwd+bwd"}
    assert {r["case"]["layout"] for r in rows} == {"per_sequence", "packed"}
    timed = [r for r in rows if not r["skipped"]]
    # Only per-sequence batches of equal-length sequences can use gather_bmm.
    assert all(r["impl"] == "gather_bmm" and r["case"]["layout"] == "packed" for r in rows if r["skipped"])
    for r in timed:
        assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] and r["reps"] >= 1
        assert r["min_bytes"] > 0
        assert abs(r["achieved_GBps"] - r["min_bytes"] / (r["median_ms"] * 1e-3) / 1e9) < 1e-9 * r["achieved_GBps"] + 1e-12
        assert abs(r["roofline_ratio"] * report["copy_bandwidth_GBps"] - r["achieved_GBps"]) < 1e-6 * r["achieved_GBps"] + 1e-12
        # Every path computes the same op: bf16 outputs within a few ulps of the loop's.
        assert r["max_scaled_err_vs_loop"] < 3e-2, r
    assert "triton" in capsys.readouterr().out  # the table was printed
