"""`model.task: sft` rows: prompt -> completion, tokenised with a per-token loss mask.

Where a row's completion comes from (the first that applies):
  chat        data.messages_column: a list of {role, content} (or its JSON); the last message
              must be the assistant's and is the completion, the rest is the prompt, rendered
              with the tokenizer's chat template (add_generation_prompt=True);
  completion  data.completion_column, as written;
  verbalized  neither column: ' ' + the label's verbalizer (model.verbalizers in label order,
              default the label names), so a label set trains as text.
The prompt of the other two is model.prompt_template.format(text=row's text).

Tokens: prompt ids (with the tokenizer's special tokens) + completion ids (without) + EOS,
tokenised apart, as generation sees them (the prompt is encoded alone, then the model
continues it). The loss reads the completion tokens and the EOS only: the target of position
t is token t + 1 when that token belongs to the completion (`lm_targets` in a batch, -100
elsewhere), so generation learns to stop.

Overflow (data.overflow): prompt + completion longer than model.max_length is `truncate`d
(the prompt is cut from the left, the completion kept; a completion longer than max_length
alone keeps one prompt token and is cut at the right) and counted, or `refuse`d with a
DataError naming how many rows and the fix. Nothing is dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hyperscale.errors import ConfigError, DataError

IGNORE = -100  # target of a position the loss does not read (torch's cross_entropy ignore_index)
UNPARSED = "unparsed"


def roles(table: dict, path: str, cfg) -> dict:
    """Columns an sft file is read from, beside the usual ones (data.config's DataConfig `cfg`)."""
    out = {"completion": cfg.completion_column if cfg.completion_column in table else None,
           "messages": cfg.messages_column}
    if cfg.messages_column is not None:
        out["text"] = None  # the prompt is the messages before the last
    if (out["completion"] or out["messages"]) and cfg.label_column not in table:
        out["label"] = None  # free-text completions: no label to parse generations back to
    elif out["completion"] is None and out["messages"] is None and cfg.label_column not in table:
        raise DataError(f"data file {path!r} has neither the completion column {cfg.completion_column!r} nor the "
                        f"label column {cfg.label_column!r}: an sft row needs a completion. Columns present: "
                        f"{sorted(table)}. Fix: set data.completion_column (or data.messages_column for chat rows), "
                        f"or data.label_column to train on verbalized labels.")
    return out


def split_messages(cells: list) -> tuple[list, list, np.ndarray]:
    """Chat cells -> (prompt messages as JSON, the last (assistant) message's content, malformed mask)."""
    prompts, completions, bad = [], [], np.zeros(len(cells), dtype=bool)
    for i, cell in enumerate(cells):
        try:
            messages = json.loads(cell) if isinstance(cell, str) else cell
            ok = (isinstance(messages, list) and len(messages) >= 2
                  and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                          for m in messages)
                  and messages[-1]["role"] == "assistant")
        except (json.JSONDecodeError, TypeError):
            ok = False
        if not ok:
            bad[i] = cell is not None  # an empty cell: missing_text reports it
            prompts.append(None)
            completions.append(None)
            continue
        prompts.append(json.dumps(messages[:-1], ensure_ascii=False))
        completions.append(messages[-1]["content"])
    return prompts, completions, bad


def render_prompt(text: str, tokenizer, template: str, chat: bool) -> str:
    """The prompt text of one row: the chat template over its messages (chat), else the prompt template."""
    if not chat:
        return template.format(text=text)
    check_chat_template(tokenizer)  # chat rows' text is the JSON of their prompt messages (split_messages)
    return tokenizer.apply_chat_template(json.loads(text), add_generation_prompt=True, tokenize=False)


def user_message(prompt: str) -> str:
    """A plain prompt as the text of a chat row (one user message), for generation."""
    return json.dumps([{"role": "user", "content": prompt}], ensure_ascii=False)


def check_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("data.messages_column", f"chat rows need the tokenizer's chat template, and this model's "
                          f"tokenizer ({type(tokenizer).__name__}) has none.",
                          "use a model whose tokenizer ships a chat template (e.g. an instruct model), or give the "
                          "rows as prompt + completion columns (data.completion_column) and unset data.messages_column.")


def completions_of(frame: pd.DataFrame, labels: list[str], verbalizers: list[str] | None) -> list[str]:
    """Each row's completion text: its completion cell, else ' ' + its label's verbalizer."""
    words = dict(zip(labels, verbalizers or labels))
    if verbalizers is not None and len(verbalizers) != len(labels):
        raise ConfigError("model.verbalizers", f"{len(verbalizers)} words for {len(labels)} labels {labels}.",
                          "give one word per label, in label order.")
    column = frame["completion"] if "completion" in frame else pd.Series([None] * len(frame), index=frame.index)
    out = []
    for completion, label in zip(column.tolist(), frame["label"].tolist()):
        if completion is not None:
            out.append(completion)
        elif label is not None and label in words:
            out.append(" " + words[label])
        else:
            raise DataError(f"an sft row has neither a completion nor a known label (label {label!r}; labels "
                            f"{labels}). Fix: give every row a completion (data.completion_column) or a label.")
    return out


@dataclass(kw_only=True)
class Overflow:
    """What fitting rows into model.max_length did."""

    n_rows: int = 0
    n_truncated: int = 0  # rows whose prompt (or completion) was cut
    n_completion_cut: int = 0  # of those, rows whose completion alone was longer than max_length
    max_tokens: int = 0  # the longest prompt + completion before fitting


def fit(prompt: list[int], completion: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Prompt cut from the left (completion kept); a completion longer than max_length - 1 is cut at
    the right after the prompt's last token (one prompt token must stay: it predicts the first)."""
    if len(prompt) + len(completion) <= max_length:
        return prompt, completion
    if len(completion) >= max_length:
        return prompt[-1:], completion[: max_length - 1]
    return prompt[len(prompt) + len(completion) - max_length:], completion


def encode_sft(frame: pd.DataFrame, tokenizer, vocab, labels: list[str], fields: list[str], *, max_length: int,
               template: str, verbalizers: list[str] | None, chat: bool, overflow: str, split: str = "train"):
    """-> (EncodedRows with one sequence per row and its prompt length, Overflow counts).

    `labels` may be empty (free-text completions): every row's class index is then -1, as is
    the index of a row whose label is unknown or missing.
    """
    from hyperscale.data.batches import EncodedRows

    if chat:
        check_chat_template(tokenizer)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("model.name_or_path", "the tokenizer has no end-of-sequence token, which sft appends to "
                          "every completion so generation stops.", "use a model whose tokenizer defines eos_token.")
    items = frame.drop_duplicates("item_id")[["item_id", "text"]]
    prompts = [render_prompt(t, tokenizer, template, chat) for t in items["text"].tolist()]
    # The chat template already holds the special tokens it needs.
    prompt_ids = tokenizer(prompts, add_special_tokens=not chat)["input_ids"] if prompts else []
    item_pos = {item: i for i, item in enumerate(items["item_id"].tolist())}
    completions = completions_of(frame, labels, verbalizers)
    uniq = list(dict.fromkeys(completions))
    comp_ids = dict(zip(uniq, tokenizer(uniq, add_special_tokens=False)["input_ids"])) if uniq else {}

    stats = Overflow(n_rows=len(frame))
    seqs, prompt_lens = [], []
    for item, completion in zip(frame["item_id"].tolist(), completions):
        p, c = list(prompt_ids[item_pos[item]]), list(comp_ids[completion]) + [eos]
        stats.max_tokens = max(stats.max_tokens, len(p) + len(c))
        if len(p) + len(c) > max_length:
            stats.n_truncated += 1
            stats.n_completion_cut += len(c) >= max_length
            p, c = fit(p, c, max_length)
        seqs.append(p + c)
        prompt_lens.append(len(p))
    if stats.n_truncated and overflow == "refuse":
        raise DataError(f"{stats.n_truncated} of {stats.n_rows} {split} rows are longer than model.max_length="
                        f"{max_length} tokens as prompt + completion + EOS ({stats.n_completion_cut} of them by the "
                        f"completion alone; the longest is {stats.max_tokens}) and data.overflow is 'refuse'. Fix: "
                        f"raise model.max_length to {stats.max_tokens}, shorten those rows, or set "
                        f"data.overflow=truncate (the prompt is cut from the left, the rows are counted).")
    label_index = {name: i for i, name in enumerate(labels)}
    label_ids = np.asarray([label_index.get(y, -1) if y is not None else -1 for y in frame["label"].tolist()],
                           dtype=np.int64)
    conditions = {f: np.asarray(vocab.index(f, frame[f].astype(str).tolist()), dtype=np.int64) for f in fields}
    rows = EncodedRows(item_tokens=seqs, row_item=np.arange(len(frame), dtype=np.int64), labels=label_ids,
                       conditions=conditions, annotators=frame["annotator"].astype(str).to_numpy(),
                       item_ids=frame["item_id"].astype(str).to_numpy(),
                       prompt_lens=np.asarray(prompt_lens, dtype=np.int64))
    return rows, stats


def parse_label(text: str, words: list[str]) -> int:
    """Index of the label whose verbalizer `text` starts with (after stripping whitespace; the longest
    match wins, so 'not toxic' is not read as 'not'), else -1 (unparsed)."""
    text = text.strip()
    best, best_len = -1, -1
    for i, w in enumerate(words):
        w = w.strip()
        if w and text.startswith(w) and len(w) > best_len:
            best, best_len = i, len(w)
    return best
