"""Shared by the issue-14 recipe runners: a cut backbone on disk, data files, train one arm, greedy
completions scored by exact match, learning-rate selection on validation, JSON and plots.

Every runner trains each arm with `hyperscale.train(..., use_ray=False)` (the same loop a Ray
worker runs), one run at a time, 1 torch thread (the machine these numbers come from has 2 cores
shared with other jobs), and reads completions back with the run's own generation path
(`hyperscale.serve.generate.generate_tokens`: KV cache, each row with its own adapter; an
instance-conditioned run builds each row's adapter from its prompt alone).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

ROOT = Path(__file__).resolve().parents[2]


def parser(doc: str, recipe: str, lrs: str):
    """The options every synthetic recipe runner takes (seeds, lr grid, steps, backbone cut, task, threads,
    folders); each runner adds its data options."""
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--lrs", default=lrs)
    p.add_argument("--steps", type=int, default=None, help="train.max_steps (default: the configs')")
    p.add_argument("--layers", type=int, default=4, help="SmolLM2-135M blocks kept (the configs' model.num_layers)")
    p.add_argument("--task", choices=["sft", "causal_lm"], default="sft",
                   help="causal_lm: the one-token fallback (the first word of the completion only)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=f"runs/recipes/{recipe}")
    p.add_argument("--out", default="docs/recipes")
    return p


def set_threads(n: int = 1) -> None:
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def cut_backbone(n_layers: int, work: Path) -> Path:
    """SmolLM2-135M cut to its first n pretrained blocks, with its LM head, saved once as a local HF folder
    (loading it takes ~2 s; de-quantizing the embedded GGUF takes ~18 s per run). Same weights as
    `model.name_or_path: smollm2-135m` + `model.num_layers: n` (the configs' own setting)."""
    out = work / f"smollm2-135m-cut{n_layers}"
    if (out / "config.json").exists():
        return out
    from hyperscale.backbones import embedded
    from hyperscale.backbones.load import keep_first_blocks

    model = embedded.model("sft")
    keep_first_blocks(model, n_layers)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    embedded.tokenizer().save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def write_jsonl(frame: pd.DataFrame, path: Path, columns: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[columns].to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def train_arm(config: Path, run_dir: Path, overrides: list[str]) -> tuple[dict, float]:
    """Train (or find finished) one run; returns eval.json's metrics and the wall seconds this call took."""
    import hyperscale

    t0 = time.perf_counter()
    metrics = hyperscale.train(str(config), run_dir, overrides=overrides, use_ray=False)
    return metrics, time.perf_counter() - t0


@torch.no_grad()
def generate(run_dir: Path, frame: pd.DataFrame, max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """Greedy completion of every row of `frame` (its text, and its task / language / annotator ids
    where the run is conditioned on them), decoded with the run's own adapters."""
    from hyperscale.serve.run import load_run

    return generate_with(load_run(run_dir), frame, max_new_tokens, batch_size)


@torch.no_grad()
def generate_with(run, frame: pd.DataFrame, max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """generate() on an already loaded run (serve.run.LoadedRun), e.g. one being onboarded."""
    from hyperscale.serve.generate import generate_tokens

    tok, template = run.tokenizer, run.cfg.model.prompt_template
    out: list[str] = []
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start:start + batch_size]
        prompts = [tok(template.format(text=t))["input_ids"] for t in part["text"]]
        conditions = {f: torch.from_numpy(run.vocab.index(f, part[f].astype(str).tolist())) for f in run.fields}
        tokens = generate_tokens(run.model, prompts, conditions, tok.pad_token_id, tok.eos_token_id, max_new_tokens)
        out += [tok.decode(t, skip_special_tokens=True) for t in tokens]
    return out


def scores_by(frame: pd.DataFrame, generated: list[str], by: str | None = None) -> dict:
    """completion_scores over all rows, and per value of column `by` when given."""
    from hyperscale.data.synthetic_sft import completion_scores

    out = completion_scores(frame["completion"].tolist(), generated)
    if by is not None:
        gen = np.asarray(generated, dtype=object)
        out["by_" + by] = {str(v): completion_scores(frame.loc[m, "completion"].tolist(), list(gen[m.to_numpy()]))
                           for v in sorted(frame[by].astype(str).unique()) for m in [frame[by].astype(str) == v]}
    return out


def choose(results: dict[str, dict], key: str = "exact_match", tie: str = "token_accuracy") -> str:
    """The setting with the best validation `key` (ties broken by `tie`, then by listing order)."""
    return max(results, key=lambda s: (results[s][key], results[s][tie]))


def select_then_seeds(arm: str, config: str, base: list[str], lrs: list[float], seeds: list[int], work: Path,
                      validation: pd.DataFrame, max_new: int) -> tuple[dict, dict[int, Path]]:
    """The recipes' protocol for one arm: train every lr of the grid on seeds[0], score greedy completions of
    `validation`, choose the lr there (choose()), then train the chosen lr on the other seeds.
    -> (record with validation scores, chosen_lr, wall_s and trainable_params; {seed: run dir at the chosen lr})."""
    record = {"config": config, "validation": {}, "eval": {}, "wall_s": {}}
    for lr in lrs:
        run = work / arm / f"lr{lr:g}-seed{seeds[0]}"
        metrics, wall = train_arm(ROOT / config, run, [*base, f"train.lr={lr}", f"train.seed={seeds[0]}"])
        record["validation"][f"{lr:g}"] = scores_by(validation, generate(run, validation, max_new))
        record["wall_s"][f"lr{lr:g}-seed{seeds[0]}"] = wall
        record["trainable_params"] = metrics.get("trainable_params")
        print(arm, f"lr={lr:g}", "validation", record["validation"][f"{lr:g}"], flush=True)
    best = choose(record["validation"])
    record["chosen_lr"] = float(best)
    runs = {}
    for seed in seeds:
        runs[seed] = work / arm / f"lr{best}-seed{seed}"
        if seed != seeds[0]:
            _, wall = train_arm(ROOT / config, runs[seed], [*base, f"train.lr={best}", f"train.seed={seed}"])
            record["wall_s"][f"lr{best}-seed{seed}"] = wall
    return record, runs


def dump(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def mean_std(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": list(map(float, a))}
