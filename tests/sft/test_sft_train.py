"""sft model and training: the loss is the completion tokens' NLL (by hand), every kind trains, an
end-to-end run through api.train writes eval.json's sft fields, resume is exact, `hyperscale generate`."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from hyperscale import api
from hyperscale.data.batches import collate
from hyperscale.data.sft import encode_sft
from hyperscale.data.vocab import ConditionVocab
from tests.helpers import randomise_b, records, tiny_config

SFT = ("model.task=sft", "model.prompt_template='{text} =>'")
FRAME = pd.DataFrame({"item_id": ["i1", "i1", "i2", "i3"], "annotator": ["a0", "a1", "a2", "a0"],
                      "text": ["the cat sat", "the cat sat", "a much longer prompt than the others", "hi"],
                      "completion": [" on the mat", " on a hat, then left", " yes", " no"], "label": None})


def _batch(tok):
    vocab = ConditionVocab({"annotator": ["a0", "a1", "a2"]})
    rows, _ = encode_sft(FRAME, tok, vocab, [], ["annotator"], max_length=32, template="{text} =>",
                         verbalizers=None, chat=False, overflow="truncate")
    return rows, collate(rows, np.arange(len(FRAME)), tok.pad_token_id)


def _model(kind="hyper_lora", *extra):
    from hyperscale.backbones.load import load_backbone

    cfg = tiny_config(*SFT, f"adapter.kind={kind}", *extra)
    torch.manual_seed(0)
    backbone = load_backbone(cfg.model)
    from hyperscale.model import build_model

    model = build_model(cfg, {"annotator": 3}, [], backbone)
    randomise_b(model, 0.3)
    return model, backbone.tokenizer


def test_loss_is_the_mean_nll_of_the_completion_tokens_by_hand():
    model, tok = _model()
    rows, batch = _batch(tok)
    out = model(batch)
    # by hand: the same adapters, the whole sequence through the body and the LM head, then the
    # log-probability of each completion token (and the EOS) read at the position before it
    weights, index = model.lora(batch, None)
    model.state.publish(weights, index)
    hidden = model.body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logp = F.log_softmax(model.head.lm_head(hidden).float(), -1)  # (B, T, vocab)
    nll, per_row = [], []
    for b in range(len(FRAME)):
        seq, p = rows.item_tokens[b], int(rows.prompt_lens[b])
        row = [-logp[b, t - 1, seq[t]].item() for t in range(p, len(seq))]  # completion + EOS tokens
        nll += row
        per_row.append(sum(row))
    assert out["loss"].item() == pytest.approx(float(np.mean(nll)), abs=1e-5)
    assert len(out["token_nll"]) == len(nll)
    sums = np.bincount(out["token_row"].numpy(), weights=out["token_nll"].double().numpy())
    np.testing.assert_allclose(sums, per_row, rtol=1e-5)
    # exactly the completion tokens (and EOS) are read: no prompt or padding position
    assert (batch["lm_targets"] != -100).sum().item() == len(nll)


@pytest.mark.parametrize("kind,extra", [("hyper_lora", ()), ("shared_lora", ()), ("per_annotator_lora", ()),
                                        ("annotator_embedding", ()), ("hyper_lora", ("adapter.conditions=[instance]",))],
                         ids=["hyper_lora", "shared_lora", "per_annotator_lora", "annotator_embedding", "instance"])
def test_every_kind_trains_sft(kind, extra):
    model, tok = _model(kind, *extra)
    _, batch = _batch(tok)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=3e-2)
    first = None
    for _ in range(8):
        loss = model(batch)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the completion becomes likelier (measured drops at these settings: 0.22 to 0.41 nats; the tiny random
    # model's frozen LM head starts near uniform, ln(49152) = 10.8)
    assert model(batch)["loss"].item() < first - 0.15, kind


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sft") / "full"
    cfg = tiny_config(*SFT, "train.max_steps=4", "train.save_every=2", "train.log_every=1", "train.warmup_steps=0",
                      "train.micro_batch_size=8", "data.synthetic.n_items=60", "data.synthetic.n_annotators=6",
                      "eval.max_examples=24", "eval.max_new_tokens=3", "logging.wandb.mode=disabled",
                      "model.verbalizers=[low,high]", "model.max_length=14")  # some prompts are cut
    return cfg, run_dir, api.train(cfg, run_dir, use_ray=False)


def test_end_to_end_run_writes_the_sft_eval_fields(sft_run):
    _, run_dir, _ = sft_run
    on_disk = json.loads((run_dir / "eval.json").read_text())
    for key in ("completion_loss", "perplexity", "n_completion_tokens", "macro_f1", "micro_f1", "accuracy",
                "unparsed_fraction", "majority_baseline", "sft_data"):
        assert key in on_disk, key
    assert on_disk["perplexity"] == pytest.approx(np.exp(on_disk["completion_loss"]))
    assert on_disk["n_examples"] == 24
    # the longest synthetic row (15 tokens) does not fit: truncated rows are counted in eval.json and data_report.json
    sft_data = on_disk["sft_data"]
    assert sft_data["train_longest_tokens"] > 14 and 0 < sft_data["train_truncated_rows"] < 240
    assert json.loads((run_dir / "data_report.json").read_text())["notes"]["sft"] == sft_data
    per = on_disk["per_annotator"]
    n_tok = sum(a["n_tokens"] for a in per.values())
    assert n_tok == on_disk["n_completion_tokens"]
    pooled = sum(a["completion_loss"] * a["n_tokens"] for a in per.values()) / n_tok
    assert pooled == pytest.approx(on_disk["completion_loss"])
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(preds) == 24 and set(preds["pred"]) <= {"0", "1", "unparsed"}
    assert on_disk["unparsed_fraction"] == pytest.approx((preds["pred"] == "unparsed").mean())
    assert (run_dir / "per_annotator.csv").read_text().startswith("annotator,known,n,n_tokens,completion_loss")
    # every completion: ' low' / ' high' + EOS = 2 tokens
    assert on_disk["n_completion_tokens"] == 2 * 24


def test_resume_of_an_sft_run_is_exact(sft_run, tmp_path):
    cfg, full_dir, metrics = sft_run
    run_dir = tmp_path / "resumed"
    run_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint_000002", run_dir / "checkpoint_000002")
    resumed_metrics = api.train(cfg, run_dir, use_ray=False)
    full, resumed = records(full_dir), records(run_dir)
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert abs(resumed[step]["loss"] - full[step]["loss"]) <= 1e-6, step
    assert abs(resumed_metrics["completion_loss"] - metrics["completion_loss"]) <= 1e-6


def test_hyperscale_generate_on_an_sft_run(sft_run, capsys):
    from hyperscale.cli import main

    _, run_dir, _ = sft_run
    assert main(["generate", str(run_dir), "--prompt", "w1 w2 w3", "--annotators", "a0,a1,nobody",
                 "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("[0]")]
    assert [line.split(":")[0] for line in lines] == ["[0] a0", "[0] a1", "[0] nobody*"]
    assert "fallback" in out.err


def test_parsed_generations_score_like_classification_and_unparsed_is_wrong(sft_run):
    """eval/sft.py's metrics from given parses: an unparsed row is wrong for every class, never a class."""
    from hyperscale.eval.metrics import perspectivist_metrics
    from hyperscale.eval.sft import SFTEvaluator
    from hyperscale.model import build_model

    cfg, _, _ = sft_run
    rows = encode_sft(FRAME.assign(label=["0", "1", "1", "0"], completion=None), _tok(), ConditionVocab(
        {"annotator": ["a0", "a1", "a2"]}), ["0", "1"], ["annotator"], max_length=32, template="{text} =>",
        verbalizers=["low", "high"], chat=False, overflow="truncate")[0]
    ev = SFTEvaluator(rows, ["0", "1"], 0, cfg, _tok(), "cpu")
    model = build_model(cfg, {"annotator": 3}, ["0", "1"])
    values = {"nll": np.array([1.0, 2.0, 3.0, 4.0]), "n_tokens": np.array([2, 2, 2, 2]),
              "generated": np.array([" low", "high!", "maybe", " high"], dtype=object),
              "pred": np.array([0, 1, -1, 1])}
    m = ev._metrics(model, values)
    assert m["completion_loss"] == pytest.approx(10 / 8) and m["n_unparsed"] == 1 and m["unparsed_fraction"] == 0.25
    assert m["accuracy"] == 0.5  # rows 0, 1 right; the unparsed row 2 and row 3 wrong
    # the same as scoring the unparsed row as a wrong class: gold 1 -> predicted 0
    ref = perspectivist_metrics(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 1]), rows.annotators, ["0", "1"], 1)
    assert m["micro_f1"] != ref["micro_f1"]  # ... except that no class gains a false positive from it
    assert m["f1_per_class"]["1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # tp 1 (row 1), fp 1 (row 3), fn 1 (row 2)
    assert m["f1_per_class"]["0"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))  # tp 1 (row 0), fn 1 (row 3)
    assert m["per_annotator"]["a0"]["accuracy"] == 0.5 and m["per_annotator"]["a2"]["accuracy"] == 0.0


def _tok():
    from hyperscale.backbones.load import load_tokenizer

    return load_tokenizer(tiny_config().model)


def test_free_text_completion_files_train_without_labels(tmp_path):
    """Files with a completion column and no label column (the Hyperdecoders / Hyper-X recipes' shape),
    instance-conditioned: eval.json has the completion loss and no label metrics."""
    rows = [{"item_id": f"i{i}", "text": " ".join(f"w{(i * 7 + j) % 13}" for j in range(3 + i % 4)),
             "annotator": "x", "completion": f" w{i % 5} w{i % 3}"} for i in range(40)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_config(*SFT, "data.source=files", f"data.train_files=[{path}]", "data.item_column=item_id",
                      "adapter.conditions=[instance]", "train.max_steps=2", "train.micro_batch_size=8",
                      "eval.max_new_tokens=2", "logging.wandb.mode=disabled", "train.packing=true")
    metrics = api.train(cfg, tmp_path / "run", use_ray=False)
    assert metrics["labels"] == [] and "macro_f1" not in metrics and metrics["n_examples"] == 8
    per_row = len(_tok()(" w1 w2", add_special_tokens=False)["input_ids"]) + 1  # every ' wA wB' (+ EOS) alike
    assert metrics["n_completion_tokens"] == 8 * per_row
    assert np.isfinite(metrics["completion_loss"])
    from hyperscale.serve.predict import Predictor

    out = Predictor.from_run(tmp_path / "run").generate(["w1 w2 w3", "w4"], ["x", "nobody"], max_new_tokens=2)
    assert out["known"].tolist() == [True, False, True, False] and (out["n_tokens"] >= 1).all()


def test_a_loaded_sft_run_encodes_sft_rows_for_onboarding(sft_run):
    """LoadedRun.encode gives sft rows (completion targets), so onboarding fits an sft run with its training loss."""
    from hyperscale.serve.onboard import fit_new_rows
    from hyperscale.serve.run import load_run

    _, run_dir, _ = sft_run
    run = load_run(run_dir)
    frame = pd.DataFrame({"item_id": ["n1", "n2"], "text": ["w1 w2 w3", "w4 w5"], "annotator": ["a0", "a1"],
                          "label": ["0", "1"]})
    rows = run.encode(frame)
    completion = [rows.item_tokens[b][rows.prompt_lens[b]:] for b in range(2)]
    tok = run.tokenizer
    assert completion == [tok(" " + w, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for w in ("low", "high")]
    params = [p for n, p in run.model.named_parameters() if n.startswith("lora.")]
    for p in params:
        p.requires_grad_(True)
    losses = fit_new_rows(run, params, frame, steps=6, lr=0.003)
    assert losses[-1] < losses[0] - 0.15, losses  # measured on a similar run: 10.68 -> 10.34 in 6 steps


@pytest.mark.parametrize("zero", [0, 2])
def test_per_annotator_lora_sft_trains_through_deepspeed(tmp_path, zero):
    """Every trainable parameter of per_annotator_lora + sft is an annotator table (the LM head is frozen): the
    optimizer gets no empty group (DeepSpeed's ZeRO optimizer read the first group's first parameter and failed)."""
    cfg = tiny_config(*SFT, "adapter.kind=per_annotator_lora", f"distributed.zero_stage={zero}", "train.max_steps=3",
                      "train.warmup_steps=0", "train.micro_batch_size=8", "train.lr=3e-2", "train.log_every=1",
                      "data.synthetic.n_items=40", "data.synthetic.n_annotators=6", "eval.max_examples=8",
                      "eval.max_new_tokens=2", "logging.wandb.mode=disabled", "model.verbalizers=[low,high]")
    api.train(cfg, tmp_path / "run", use_ray=False)
    losses = [r["loss"] for r in records(tmp_path / "run").values()]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["completion_loss"] > 0


def test_onboarding_reads_an_sft_file_with_its_completions(sft_run, tmp_path):
    """`hyperscale onboard RUN --data FILE` on an sft run keeps the file's completion column (it was read as a
    classification file, so completions were dropped and the verbalized label used instead)."""
    from hyperscale.serve.onboard import read_rows
    from hyperscale.serve.run import load_run

    _, run_dir, _ = sft_run
    path = tmp_path / "new.jsonl"
    pd.DataFrame({"text": ["w1 w2", "w3"], "annotator": ["new1", "new1"], "label": ["0", "1"],
                  "completion": [" high then low", " low"]}).to_json(path, orient="records", lines=True)
    frame = read_rows(load_run(run_dir), str(path))
    assert frame["completion"].tolist() == [" high then low", " low"]
