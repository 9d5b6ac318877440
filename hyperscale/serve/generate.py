"""Generation with a different generated adapter per row: `Predictor.generate`, `hyperscale generate`.

One batched decode serves many perspectives at once: the LoRA module generates
A and B for the batch's unique conditions once, they are published on the
model's AdapterState, and every forward of the decode (the prefill over the
prompts and each one-token step over the KV cache) reads that same state, so row
b is adapted with its own condition's adapter at every step, prefill and decode
alike (the row index of a (B, 1) step is the sequence index itself).

Prompts are left-padded so every row's next token sits in the last column;
position ids are counted from each row's first real token, so a padded row sees
exactly the positions it would see alone. Hence a row generated in a mixed batch
equals the same row generated alone, token for token under greedy decoding in
fp32 (tests/serve/test_generate.py holds this).

Only runs whose backbone kept its LM head can generate: `model.task: causal_lm` or
`sft` (a classification run's head is a class head over a pooled vector). Unknown
annotators get the kind's fallback adapter and are flagged `known=False`.
Instance-conditioned runs (Hyperdecoders) generate each row's adapter from the
mean of the frozen body's states over its prompt, adapters off, with the same
positions as the row alone: the encoding training pooled (prompt tokens only).
The head's `token_logits` (sft) reads the hidden states, so annotator_embedding's
per-annotator shift applies at every decoding step too.
"""

from __future__ import annotations

import torch

from hyperscale.errors import ConfigError, DataError


def lm_head_of(model):
    """The frozen LM head of a causal_lm model, or a ConfigError naming why there is none."""
    lm_head = getattr(model.head, "lm_head", None)
    if lm_head is None:
        raise ConfigError("model.task", "this run has no language-model head to generate with (it was trained as a "
                          "classifier over a pooled vector).",
                          "train with model.task: sft (or causal_lm) to generate per perspective.")
    return lm_head


def _prompt_instance(model, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, H) mean of the frozen body's states over each left-padded prompt's real tokens, adapters off."""
    model.state.enabled = False
    try:
        hidden = model.body(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
    finally:
        model.state.enabled = True
    m = mask.to(hidden.dtype)[..., None]
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).float()


def left_pad(token_lists: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (B, T) ids and attention mask, padded on the left."""
    width = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), width), dtype=torch.long)
    for b, toks in enumerate(token_lists):
        if toks:
            ids[b, width - len(toks):] = torch.tensor(toks, dtype=torch.long)
            mask[b, width - len(toks):] = 1
    return ids, mask


def _next_token(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """(B, vocab) logits -> (B,) next token ids: argmax, or a sample with temperature and nucleus."""
    if not do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest prefix whose mass reaches top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_tokens(model, prompts: list[list[int]], conditions: dict[str, torch.Tensor], pad_id: int,
                    eos_id: int | None, max_new_tokens: int = 32, do_sample: bool = False,
                    temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None) -> list[list[int]]:
    """Token ids of each row's completion (without the prompt, cut after its end-of-sequence token).

    `prompts`: token ids per row; `conditions`: field -> (B,) condition index of each row
    (-1 = unknown: the kind's fallback), as `cond_<field>` in a training batch.
    """
    if max_new_tokens < 1:
        raise DataError(f"max_new_tokens is {max_new_tokens}. Fix: ask for at least one new token.")
    if do_sample and temperature <= 0:
        raise DataError(f"temperature {temperature} is not positive. Fix: use do_sample=False for greedy decoding.")
    lm_head = lm_head_of(model)
    was_training = model.training
    model.eval()
    device = next(model.head.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    batch = {"input_ids": ids, "attention_mask": mask, **{f"cond_{f}": v.to(device) for f, v in conditions.items()}}
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each row counts from its own first token
    instance = _prompt_instance(model, ids, mask, positions) if model.uses_instance else None
    weights, seq_index = model.lora(batch, instance)
    model.state.publish(weights, seq_index)  # read by every forward below, prefill and decode
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    n = ids.shape[0]
    rows = torch.arange(n, device=device)
    token_logits = getattr(model.head, "token_logits", None)

    def next_logits(hidden: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, vocab)
        return token_logits(hidden, batch, rows) if token_logits is not None else lm_head(hidden).float()

    out = model.body(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, next_pos = out.past_key_values, positions[:, -1] + 1
    logits = next_logits(out.last_hidden_state[:, -1])
    done = torch.zeros(n, dtype=torch.bool, device=device)
    generated = []
    for step in range(max_new_tokens):
        token = _next_token(logits, do_sample, temperature, top_p, generator)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        generated.append(token)
        if eos_id is not None:
            done |= token == eos_id
        if done.all() or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(n, 1, dtype=mask.dtype, device=device)], dim=1)
        out = model.body(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                         past_key_values=cache, use_cache=True)
        cache, next_pos = out.past_key_values, next_pos + 1
        logits = next_logits(out.last_hidden_state[:, -1])
    model.train(was_training)
    tokens = torch.stack(generated, 1).tolist()  # (B, steps)
    completions = []
    for row in tokens:
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id) + 1]
        completions.append(row)
    return completions
