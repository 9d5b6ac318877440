"""`hyperscale predict RUN_DIR`: labels for texts from any set of annotators.

The request is a text x annotator matrix. It is flattened to one row per
(text, annotator) pair and run through the model in batches of eval.batch_size
rows; each batch generates adapters only for its unique annotators, so asking
for 10 or 10,000 annotators costs forwards, not per-annotator model copies.
Annotators the run never saw get the kind's documented fallback (mean
embedding / mean head / mean LoRA / the shared part) and are flagged
`known=False`, never an error.

Python API:
    Predictor.from_run("runs/x").predict(["some text"], ["a01", "a02"])  -> DataFrame
    (long format: text_index, text, annotator, known, label, p_<class>...; `.matrix(df)`
    pivots it to texts x annotators).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hyperscale.errors import DataError
from hyperscale.eval.decision import decide
from hyperscale.serve.run import LoadedRun, load_run


class Predictor:
    def __init__(self, run: LoadedRun):
        self.run = run

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Predictor:
        return cls(load_run(run_dir))

    @property
    def annotators(self) -> list[str]:
        """Annotator ids the run knows (its vocabulary order)."""
        return self.run.vocab.ids("annotator")

    def _frame(self, texts: list[str], annotators: list[str]) -> pd.DataFrame:
        n_t, n_a = len(texts), len(annotators)
        frame = pd.DataFrame({
            "item_id": np.repeat([f"q{i}" for i in range(n_t)], n_a).astype(object),
            "text": np.repeat(np.array(texts, dtype=object), n_a),
            "annotator": np.tile(np.array(annotators, dtype=object), n_t),
            # encode_rows maps labels too; a placeholder class keeps one code path with training
            # (an sft run on free-text completions has no classes).
            "label": self.run.labels[0] if self.run.labels else None,
        })
        for f in self.run.fields:
            if f not in frame:
                frame[f] = None  # task / language not given: unknown -> fallback
        return frame

    def _request(self, texts: list[str], annotators: list[str] | str, verb: str, noun: str) -> tuple[list, list]:
        """Texts and annotator ids as strings ('all' or 'a,b' expanded; a repeated id is one column); none is an error."""
        if isinstance(annotators, str):
            annotators = self.annotators if annotators == "all" else [a.strip() for a in annotators.split(",") if a.strip()]
        texts, annotators = [str(t) for t in texts], list(dict.fromkeys(str(a) for a in annotators))
        if not texts or not annotators:
            raise DataError(f"nothing to {verb}: {len(texts)} {noun} x {len(annotators)} annotators. "
                            f"Fix: pass at least one of the {noun} and one annotator (or 'all').")
        return texts, annotators

    def predict(self, texts: list[str], annotators: list[str] | str = "all") -> pd.DataFrame:
        """One row per (text, annotator): predicted label, class probabilities and `known`."""
        texts, annotators = self._request(texts, annotators, "predict", "texts")
        blank = [i + 1 for i, t in enumerate(texts) if not t.strip()]
        if blank:
            raise DataError(f"text {', '.join(map(str, blank[:5]))} of {len(texts)} is empty: there is nothing to "
                            f"label. Fix: remove empty texts (or give each row of a --texts file a text).")
        frame = self._frame(texts, annotators)
        rows = self.run.encode(frame)
        probs = self.run.probabilities(rows)  # (n_texts * n_annotators, C)
        labels = self.run.labels
        out = pd.DataFrame({
            "text_index": np.repeat(np.arange(len(texts)), len(annotators)),
            "text": frame["text"].to_numpy(),
            "annotator": frame["annotator"].to_numpy(),
            "known": rows.conditions["annotator"] >= 0,
            "label": [labels[i] for i in decide(probs, self.run.decision_offsets)],  # eval.decision
        })
        for c, name in enumerate(labels):
            out[f"p_{name}"] = probs[:, c]
        return out

    def generate(self, prompts: list[str], annotators: list[str] | str = "all", max_new_tokens: int = 32,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                 template: bool = True) -> pd.DataFrame:
        """One completion per (prompt, annotator), every row decoded with its own generated adapter.

        All rows go through one batched decode (serve/generate.py). `template`: wrap each prompt in the
        run's model.prompt_template, as training did. Columns: prompt_index, prompt, annotator, known,
        completion, n_tokens.
        """
        from hyperscale.serve.generate import generate_tokens

        prompts, annotators = self._request(prompts, annotators, "generate", "prompts")
        run, tok = self.run, self.run.tokenizer
        frame = self._frame(prompts, annotators)
        chat = run.cfg.model.task == "sft" and run.cfg.data.messages_column is not None
        if chat and template:  # a chat-trained sft run: each prompt is one user message in the chat template
            from hyperscale.data.sft import render_prompt, user_message

            texts = [render_prompt(user_message(t), tok, run.cfg.model.prompt_template, True) for t in frame["text"]]
        else:
            texts = [run.cfg.model.prompt_template.format(text=t) if template else t for t in frame["text"]]
        token_lists = [tok(t, add_special_tokens=not (chat and template))["input_ids"] for t in texts]
        conditions = {f: torch.from_numpy(run.vocab.index(f, frame[f])) for f in run.fields}
        completions = generate_tokens(run.model, token_lists, conditions, tok.pad_token_id, tok.eos_token_id,
                                      max_new_tokens, do_sample, temperature, top_p, seed)
        return pd.DataFrame({
            "prompt_index": np.repeat(np.arange(len(prompts)), len(annotators)),
            "prompt": frame["text"].to_numpy(),
            "annotator": frame["annotator"].to_numpy(),
            "known": conditions["annotator"].numpy() >= 0 if "annotator" in conditions else True,
            "completion": [tok.decode(c, skip_special_tokens=True) for c in completions],
            "n_tokens": [len(c) for c in completions],
        })

    @staticmethod
    def matrix(long: pd.DataFrame) -> pd.DataFrame:
        """texts x annotators table of predicted labels; unknown annotators' columns marked with '*'."""
        unknown = set(long.loc[~long["known"], "annotator"])
        wide = long.pivot(index="text_index", columns="annotator", values="label")
        wide = wide[list(dict.fromkeys(long["annotator"]))]
        wide.columns = [f"{a}*" if a in unknown else a for a in wide.columns]
        return wide


def read_texts(path: str) -> list[str]:
    """A .csv / .jsonl with a 'text' column, or plain text with one text per line (blank lines skipped).

    Cells are read as written: an empty CSV cell is an empty text (refused by `predict`), never the
    string "nan"."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--texts {path!r} is not a file. Fix: pass a .txt (one text per line), .csv or .jsonl "
                        f"(a 'text' column) file.")
    if p.suffix in (".csv", ".jsonl", ".json"):
        frame = (pd.read_csv(p, dtype=str, keep_default_na=False) if p.suffix == ".csv"
                 else pd.read_json(p, lines=p.suffix == ".jsonl", dtype=False))
        if "text" not in frame:
            raise DataError(f"--texts {path!r} has no 'text' column (columns: {list(frame.columns)}). Fix: name the "
                            f"column holding the texts 'text'.")
        return ["" if v is None or pd.isna(v) else str(v) for v in frame["text"]]
    return [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
