"""model.compute_dtype: auto is a measurement, cached, recorded; an explicit dtype is taken as written."""

import json

import pytest

from hyperscale.backbones import dtype as dtype_mod
from hyperscale.backbones.dtype import resolve_compute_dtype

from tests.helpers import tiny_config


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERSCALE_CACHE", str(tmp_path))
    return tmp_path / dtype_mod.CACHE_FILE


@pytest.mark.parametrize("fp32_ms,bf16_ms,chosen", [(10.0, 100.0, "float32"), (100.0, 10.0, "bfloat16"),
                                                      (11.0, 10.0, "float32")])  # 1.1x is not enough for bf16
def test_auto_takes_the_measured_faster_dtype_and_caches_it(cache, monkeypatch, fp32_ms, bf16_ms, chosen):
    calls = []

    def fake_time(layer, x, reps=3):
        calls.append(str(x.dtype))
        return fp32_ms if x.dtype.is_floating_point and x.element_size() == 4 else bf16_ms

    monkeypatch.setattr(dtype_mod, "time_forward_backward", fake_time)
    model = tiny_config("model.quantization=4bit", "model.compute_dtype=auto").model
    choice = resolve_compute_dtype(model, "cpu", (64, 128), rows=32)
    assert choice.dtype == chosen and f"bfloat16 {bf16_ms:.1f} ms, float32 {fp32_ms:.1f} ms" in choice.reason
    assert calls == ["torch.float32", "torch.bfloat16"]
    again = resolve_compute_dtype(model, "cpu", (64, 128), rows=32)
    assert again.dtype == chosen and again.reason.endswith("(cached)") and len(calls) == 2  # measured once
    assert len(json.loads(cache.read_text())) == 1
    resolve_compute_dtype(model, "cpu", (64, 256), rows=32)  # another shape: measured again
    assert len(calls) == 4


def test_an_explicit_dtype_is_not_measured(cache, monkeypatch):
    monkeypatch.setattr(dtype_mod, "time_forward_backward", lambda *a, **k: pytest.fail("measured"))
    choice = resolve_compute_dtype(tiny_config("model.compute_dtype=bfloat16").model, "cpu", (64, 128), rows=32)
    assert choice.dtype == "bfloat16" and "set in the config" in choice.reason


def test_a_real_probe_runs_the_quantized_layer_both_ways(cache):
    choice = resolve_compute_dtype(tiny_config("model.quantization=4bit", "model.compute_dtype=auto").model, "cpu",
                                   (64, 128), rows=64)
    assert choice.dtype in ("float32", "bfloat16") and set(choice.probe_ms) == {"float32", "bfloat16"}
    assert all(ms > 0 for ms in choice.probe_ms.values())


def test_the_backbone_records_its_choice(cache, monkeypatch):
    from hyperscale.backbones.load import load_backbone

    monkeypatch.setattr(dtype_mod, "time_forward_backward", lambda layer, x, reps=3: 1.0 if x.element_size() == 4 else 9.0)
    bb = load_backbone(tiny_config("model.compute_dtype=auto").model, rows=16)
    assert bb.dtype_choice.dtype == "float32" and next(bb.body.parameters()).dtype.is_floating_point
    assert "64x128" in bb.dtype_choice.reason  # the tiny llama's largest projection (hidden 64 -> MLP 128)
