"""Small builders shared by tests: tiny configs, hand-made batches, a run directory without training."""

import json

import torch

from hyperscale.config import build_config

ANNOTATORS = [f"a{i}" for i in range(6)]


def tiny_config(*overrides, family="llama"):
    targets = {"llama": "[q_proj,v_proj]", "bert": "[query,value]", "gpt2": "[c_attn]"}[family]
    # float32 pinned: tests hold exact equalities and tolerances that a measured `auto` could change by machine
    base = {"data": {"source": "synthetic"},
            "model": {"name_or_path": f"tiny-random-{family}", "max_length": 32, "compute_dtype": "float32"},
            "train": {"progress_bar": False}}
    return build_config(base, [f"adapter.target_modules={targets}", *overrides])


def seeded_model(cfg, sizes=None, labels=("0", "1")):
    """build_model from seed 0, with annotator / task / language vocabularies of 50 / 3 / 4."""
    from hyperscale.model import build_model

    torch.manual_seed(0)
    return build_model(cfg, sizes or {"annotator": 50, "task": 3, "language": 4}, list(labels))


def randomise_b(model, std=0.05):
    """B heads start at zero; give them values so the adapters change the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head_b" in name or name.startswith("lora.B"):
                p.normal_(0, std)


def make_batch(n=12, seq=10, vocab=1000, n_annotators=3, n_classes=2, seed=0, tasks=0, languages=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(seq // 2, seq + 1, (n,), generator=g)
    ids = torch.randint(10, vocab, (n, seq), generator=g)
    mask = (torch.arange(seq)[None] < lengths[:, None]).long()
    batch = {"input_ids": ids * mask + 2 * (1 - mask), "attention_mask": mask,
             "labels": torch.randint(0, n_classes, (n,), generator=g),
             "cond_annotator": torch.randint(0, n_annotators, (n,), generator=g)}
    if tasks:
        batch["cond_task"] = torch.randint(0, tasks, (n,), generator=g)
    if languages:
        batch["cond_language"] = torch.randint(0, languages, (n,), generator=g)
    return batch


def records(run_dir, split="train"):
    """{step: record} of one split of a run's metrics.jsonl."""
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["split"] == split}


def make_run(tmp_path, kind="hyper_lora", *overrides):
    """The files a finished training run leaves (rundir.py), from an untrained model with perturbed weights."""
    from hyperscale.data.vocab import ConditionVocab
    from hyperscale.model import build_model
    from hyperscale.rundir import RunDir, save_trainable, trainable_state

    cfg = tiny_config(f"adapter.kind={kind}", *overrides)
    run = RunDir(tmp_path)
    run.path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(cfg, {"annotator": len(ANNOTATORS)}, ["0", "1"])
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # B starts at zero: give every table values so annotators differ
        for p in model.trainable_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    cfg.save(run.config, runtime=model.runtime)
    ConditionVocab({"annotator": ANNOTATORS}).save(run.vocab)
    run.labels.write_text(json.dumps(["0", "1"]))
    save_trainable(trainable_state(model), run.trainable)
    return model
