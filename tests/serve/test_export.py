"""hyperscale export: PEFT LoRA directories that peft loads and that predict exactly what hyperscale predicts.

Every round trip: make a run (tests.helpers.make_run: real tiny model, every trainable
table perturbed so annotators differ), export it, load the directory with
`peft.PeftModel.from_pretrained` on the same base weights, and compare the class logits
with hyperscale's own forward on the same tokenised texts, in float32: the two compute the same sums in a different order (hyperscale's grouped bmm,
peft's per-layer Linear pair); measured maximum differences are 0 to 1.8e-5 on logits
of magnitude 0.1-4 (make_run's perturbed weights make these tiny models sensitive). Each test also checks the adapter matters
(the base alone is far off), so an export that wrote nothing could not pass. float32 results are
compared at 1e-5 relative + 3e-5 absolute (FP32_ATOL); a float64 round trip at 1e-6 shows the export itself
is exact.
"""

import json

import numpy as np
import pytest
import torch

from hyperscale.data.batches import collate
from hyperscale.errors import ConfigError, DataError, RunDirError
from hyperscale.serve.export import base_model, class_logits, export, load_head
from hyperscale.serve.predict import Predictor
from hyperscale.serve.run import load_run
from tests.helpers import make_run

peft = pytest.importorskip("peft")

TARGETS = {"llama": "[q_proj,v_proj]", "bert": "[query,value]", "gpt2": "[c_attn]"}
TEXTS = ["the old road", "apple river candle", "a quiet garden in the morning"]
CAUSAL = ("model.task=causal_lm", "model.verbalizers=[bad,good]")
# 1e-5 held in every case but one: BERT with the fallback adapter, 1.8e-5 on a logit of 0.12. That is float32
# rounding, not the export: in float64 (test_float64_round_trip_is_exact) the same case agrees to 4e-7.
FP32_ATOL = 3e-5


def _run(tmp_path, family, kind, *overrides):
    make_run(tmp_path / "run", kind, f"model.name_or_path=tiny-random-{family}",
             f"adapter.target_modules={TARGETS[family]}", *overrides)
    return tmp_path / "run"


def _batch(run, texts, annotators):
    """Hyperscale's tokenised batch for (text, annotator) pairs, and its own class logits."""
    rows = run.encode(Predictor(run)._frame(texts, annotators))
    batch = collate(rows, np.arange(len(rows)), run.tokenizer.pad_token_id)
    with torch.no_grad():
        return batch, run.model(batch)["logits"]


def _peft_logits(peft_model, batch, info, head, **kw):
    with torch.no_grad():
        out = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)
    return class_logits(out, batch["attention_mask"], info, head)


# every backbone x every exportable LoRA kind; the variants ride along: a decoder pooled by its mean (head
# beside the LoRA), a regex target, some blocks only, causal_lm, multi_head's per-annotator heads, hyper_lora's
# shared_base (a shared pair stacked with every generated one at rank 2r), factored heads and the
# per-condition logit bias (condition_bias: exported as each condition's head bias)
CASES = [("llama", "hyper_lora", ()), ("llama", "shared_lora", ("adapter.target_modules=[re:.*proj]",)),
         ("llama", "per_annotator_lora", ("model.pooling=mean",)),
         ("bert", "hyper_lora", ()), ("bert", "shared_lora", ()), ("bert", "per_annotator_lora", ()),
         ("gpt2", "hyper_lora", ("adapter.hypernet.shared_base=true", "adapter.hypernet.head_rank=4")),
         ("llama", "hyper_lora", ("adapter.hypernet.shared_base=true", "adapter.hypernet.condition_bias=true")),
         ("gpt2", "shared_lora", ("adapter.layers=[1]",)),
         ("gpt2", "per_annotator_lora", CAUSAL), ("llama", "hyper_lora", CAUSAL + ("adapter.layers=[-1]",)),
         ("llama", "multi_head", ())]


@pytest.mark.parametrize("family,kind,extra", CASES,
                         ids=[f"{f}-{k}{'-' + '-'.join(e) if e else ''}" for f, k, e in CASES])
def test_round_trip_equals_hyperscale(tmp_path, family, kind, extra):
    run_dir = _run(tmp_path, family, kind, *extra)
    summary = export(run_dir, tmp_path / "out", "a1,a4,never-seen")
    assert [a["dir"] for a in summary["adapters"]] == ["a1", "a4", "never-seen"]
    assert [a["fallback"] for a in summary["adapters"]] == [[], [], ["annotator"]]
    run = load_run(run_dir)
    base = base_model(run)
    plain = None
    for name in ("a1", "a4", "never-seen"):
        folder = tmp_path / "out" / name
        info = json.loads((folder / "hyperscale.json").read_text())
        batch, ref = _batch(run, TEXTS, [name])
        peft_model = peft.PeftModel.from_pretrained(base, str(folder), adapter_name=name.replace("-", "_")).eval()
        got = _peft_logits(peft_model, batch, info, load_head(folder))
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=FP32_ATOL)
        # exactly hyperscale's adapted modules carry a LoRA, at scale = lora_alpha / r
        lora_layers = [m for m in peft_model.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
        assert len(lora_layers) == sum(1 for _ in run.model.body.modules() if hasattr(_, "spec"))
        assert all(m.scaling[name.replace("-", "_")] == pytest.approx(run.cfg.adapter.scale) for m in lora_layers)
        if plain is None:  # the same base without any adapter is far from hyperscale's prediction
            with peft_model.disable_adapter():
                plain = _peft_logits(peft_model, batch, info, load_head(folder))
            assert (plain - ref).abs().max() > 1e-2
        base = peft_model.unload()  # the next adapter starts from the bare base again
    flags = json.loads((tmp_path / "out" / "never-seen" / "hyperscale.json").read_text())
    assert flags["fallback"] == ["annotator"] and flags["fallback_means"]
    assert json.loads((tmp_path / "out" / "export.json").read_text())["condition_vocab"]["annotator"][1] == "a1"


@pytest.mark.parametrize("extra", [CAUSAL, ()], ids=["causal_lm", "seq_cls"])
def test_mixed_batch_one_adapter_per_row_equals_batched_op(tmp_path, extra):
    run_dir = _run(tmp_path, "llama", "hyper_lora", *extra)
    names = ["a0", "a2", "a5", "never-seen"]
    export(run_dir, tmp_path / "out", names)
    run = load_run(run_dir)
    peft_model = None
    for name in names:
        folder = str(tmp_path / "out" / name)
        if peft_model is None:
            peft_model = peft.PeftModel.from_pretrained(base_model(run), folder, adapter_name=name.replace("-", "_"))
        else:
            peft_model.load_adapter(folder, adapter_name=name.replace("-", "_"))
    peft_model.eval()
    # every text with every annotator in one batch; hyperscale generates the 4 adapters and runs its one op
    batch, ref = _batch(run, TEXTS, names)
    per_row = [names[i % len(names)] for i in range(len(ref))]
    heads = [load_head(tmp_path / "out" / n) for n in per_row]
    head = None if heads[0] is None else (torch.stack([h[0] for h in heads]), torch.stack([h[1] for h in heads]))
    info = json.loads((tmp_path / "out" / names[0] / "hyperscale.json").read_text())
    got = _peft_logits(peft_model, batch, info, head, adapter_names=[n.replace("-", "_") for n in per_row])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert (ref[0::4] - ref[1::4]).abs().max() > 1e-2  # rows of different annotators do differ


def test_float64_round_trip_is_exact(tmp_path):
    """The worst float32 case (BERT, fallback adapter) in float64: the export loses nothing but rounding."""
    from hyperscale.serve.export import check_out, resolve_conditions, write_export

    run_dir = _run(tmp_path, "bert", "hyper_lora")
    run = load_run(run_dir)
    run.model.to(torch.float64)
    write_export(run, resolve_conditions(run.vocab, "a1,never-seen", None, None), check_out(tmp_path / "out"),
                 dtype=torch.float64)
    base = base_model(run).double()
    for name in ("a1", "never-seen"):
        folder = tmp_path / "out" / name
        peft_model = peft.PeftModel.from_pretrained(base, str(folder), adapter_name="x").eval()
        batch, ref = _batch(run, TEXTS, [name])
        got = _peft_logits(peft_model, batch, json.loads((folder / "hyperscale.json").read_text()), load_head(folder))
        # hyperscale's forward returns float32 logits: agreement to that rounding (measured 4e-7), not 1e-14
        torch.testing.assert_close(got.float(), ref, rtol=1e-6, atol=1e-6)
        base = peft_model.unload()


def test_with_base_is_self_contained_for_auto_peft(tmp_path):
    """--with-base: peft's AutoPeftModelForCausalLM needs only the adapter folder (base found by its config)."""
    run_dir = _run(tmp_path, "gpt2", "hyper_lora", *CAUSAL)
    summary = export(run_dir, tmp_path / "out", ["a2"], with_base=True)
    assert summary["base_model_name_or_path"] == str((tmp_path / "out" / "base").absolute())
    model = peft.AutoPeftModelForCausalLM.from_pretrained(str(tmp_path / "out" / "a2")).eval()
    run = load_run(run_dir)
    batch, ref = _batch(run, TEXTS, ["a2"])
    got = _peft_logits(model, batch, json.loads((tmp_path / "out" / "a2" / "hyperscale.json").read_text()), None)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_merged_checkpoint_predicts_like_the_adapter(tmp_path):
    from transformers import AutoModelForSequenceClassification

    run_dir = _run(tmp_path, "llama", "per_annotator_lora")
    export(run_dir, tmp_path / "merged", ["a3"], merged=True)
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    run = load_run(run_dir)
    info = json.loads((tmp_path / "merged" / "hyperscale.json").read_text())
    batch, ref = _batch(run, TEXTS, ["a3"])
    assert not any("lora" in n for n, _ in merged.named_parameters())
    got = _peft_logits(merged, batch, info, load_head(tmp_path / "merged"))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_existing_export_is_replaced_whole_and_foreign_folders_refused(tmp_path):
    run_dir = _run(tmp_path, "llama", "shared_lora")
    export(run_dir, tmp_path / "out", ["a1", "a2"])
    export(run_dir, tmp_path / "out", ["a3"])  # an earlier export is replaced, not merged into
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a3", "export.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="not a hyperscale export"):
        export(run_dir, tmp_path / "mine", ["a1"])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("kind,extra,error,match", [
    ("annotator_embedding", (), ConfigError, "annotator_embedding's perspective lives in its head"),
    ("hyper_lora", ("adapter.conditions=[annotator,instance]",), ConfigError, "conditioned on the instance"),
    ("hyper_lora", ("model.quantization=4bit",), ConfigError, "--merged would add the LoRA into quantized"),
])
def test_refusals_name_the_reason(tmp_path, kind, extra, error, match):
    if "model.quantization=4bit" in extra:
        pytest.importorskip("bitsandbytes")
    run_dir = _run(tmp_path, "llama", kind, *extra)
    with pytest.raises(error, match=match):
        export(run_dir, tmp_path / "out", ["a1"], merged="model.quantization=4bit" in extra)
    assert not (tmp_path / "out").exists()


def test_bad_inputs_name_the_fix(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        export(tmp_path / "nowhere", tmp_path / "out", "all")
    run_dir = _run(tmp_path, "llama", "hyper_lora")
    with pytest.raises(DataError, match="selection is empty.*--all"):
        export(run_dir, tmp_path / "out", "")
    with pytest.raises(DataError, match="not conditioned on task"):
        export(run_dir, tmp_path / "out", "a1", task="nli")
    with pytest.raises(DataError, match="--merged writes one full model"):
        export(run_dir, tmp_path / "out", "a1,a2", merged=True)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(RunDirError, match="cannot create its parent folder"):
        export(run_dir, tmp_path / "a_file" / "out", "a1")


def test_cli_export_all(tmp_path, capsys):
    from hyperscale.cli import main

    run_dir = _run(tmp_path, "gpt2", "hyper_lora")
    assert main(["export", str(run_dir), "--out", str(tmp_path / "out"), "--all"]) == 0
    summary = json.loads((tmp_path / "out" / "export.json").read_text())
    assert summary["n_adapters"] == 6 and summary["task_type"] == "SEQ_CLS"
    assert "6 adapters" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2"), "--all"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_4bit_causal_lm_export_predicts_like_hyperscale(tmp_path):
    """The embedded SmolLM2-135M in NF4, causal_lm: 3 exported annotators loaded by peft on the same NF4 base.

    peft's bnb Linear4bit dequantizes the same NF4 weights, but adds the LoRA in its own order, so this is held
    to a stated tolerance: class probabilities within 1e-4 and the same labels (measured with float32 compute:
    at most 6.6e-6 in probability, 4e-5 in logits of magnitude up to 8)."""
    pytest.importorskip("bitsandbytes")
    from hyperscale.backbones.quantize import quantize_body

    run_dir = _run(tmp_path, "llama", "hyper_lora", "model.name_or_path=smollm2-135m", "model.quantization=4bit",
                   *CAUSAL, "adapter.rank=2", "adapter.layers=[-2,-1]")
    names = ["a0", "a3", "a5"]
    export(run_dir, tmp_path / "out", names)
    run = load_run(run_dir)
    base = base_model(run)
    quantize_body(base.base_model, "4bit", torch.float32)  # hyperscale's own NF4 of the same weights
    texts = ["the old road was closed again", "what a lovely quiet garden", "you are all idiots"]
    for name in names:
        folder = tmp_path / "out" / name
        peft_model = peft.PeftModel.from_pretrained(base, str(folder), adapter_name="x").eval()
        batch, ref = _batch(run, texts, [name])
        got = _peft_logits(peft_model, batch, json.loads((folder / "hyperscale.json").read_text()), None)
        p_got, p_ref = got.softmax(-1), ref.softmax(-1)
        assert (p_got - p_ref).abs().max() < 1e-4
        assert torch.equal(p_got.argmax(-1), p_ref.argmax(-1))
        base = peft_model.unload()


SFT = ("model.task=sft", "model.prompt_template='{text} =>'", "model.verbalizers=[bad,good]")


@pytest.mark.parametrize("kind", ["hyper_lora", "per_annotator_lora"])
def test_sft_export_scores_completions_like_hyperscale(tmp_path, kind):
    """An sft run exports CAUSAL_LM LoRAs; peft's next-token NLL on every completion token equals hyperscale's."""
    run_dir = _run(tmp_path, "llama", kind, *SFT)
    export(run_dir, tmp_path / "out", "a1,never-seen")
    run = load_run(run_dir)
    base = base_model(run)
    frame = Predictor(run)._frame(TEXTS, ["a1"]).assign(completion=[" good", " bad and worse", " good"])
    for name in ("a1", "never-seen"):
        folder = tmp_path / "out" / name
        info = json.loads((folder / "hyperscale.json").read_text())
        assert info["task"] == "sft" and info["sft"]["eos_token_id"] == run.tokenizer.eos_token_id
        assert json.loads((folder / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
        rows = run.encode(frame.assign(annotator=name))
        batch = collate(rows, np.arange(len(rows)), run.tokenizer.pad_token_id)
        with torch.no_grad():
            ref = run.model(batch)["token_nll"]
        peft_model = peft.PeftModel.from_pretrained(base, str(folder), adapter_name=name.replace("-", "_")).eval()
        sel = batch["lm_targets"] != -100
        with torch.no_grad():
            logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            got = torch.nn.functional.cross_entropy(logits[sel].float(), batch["lm_targets"][sel], reduction="none")
            with peft_model.disable_adapter():
                plain = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        assert sel.sum(1).min() >= 2  # each row's completion tokens and its EOS are compared
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=FP32_ATOL)
        plain_nll = torch.nn.functional.cross_entropy(plain[sel].float(), batch["lm_targets"][sel], reduction="none")
        assert (plain_nll - ref).abs().max() > 1e-2  # the adapter matters
        with pytest.raises(ConfigError, match="no class logits"):
            class_logits(None, batch["attention_mask"], info)
        base = peft_model.unload()
