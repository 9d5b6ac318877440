"""sft rows: completion column, verbalized labels, chat messages; targets token by token; overflow; bad rows."""

import json

import numpy as np
import pandas as pd
import pytest

from hyperscale.backbones.load import load_tokenizer
from hyperscale.data.batches import collate
from hyperscale.data.config import DataConfig
from hyperscale.data.load import load_data
from hyperscale.data.sft import encode_sft, fit, parse_label
from hyperscale.data.vocab import ConditionVocab
from hyperscale.errors import ConfigError, DataError
from tests.helpers import tiny_config

ROWS = [
    {"text": "the cat sat", "annotator": "a1", "completion": " on the mat"},
    {"text": "the cat sat", "annotator": "a2", "completion": " on the dog, twice"},
    {"text": "hello", "annotator": "a1", "completion": " world"},
    {"text": "blank one", "annotator": "a2", "completion": "   "},
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(tiny_config().model)


def _files(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _encode(frame, tok, labels=(), max_length=64, overflow="truncate", verbalizers=None, chat=False):
    vocab = ConditionVocab.from_frame(frame, ["annotator"])
    return encode_sft(frame, tok, vocab, list(labels), ["annotator"], max_length=max_length, template="{text} =>",
                      verbalizers=verbalizers, chat=chat, overflow=overflow)


def test_completion_rows_and_empty_completions_are_counted_not_dropped(tmp_path, tok):
    path = _files(tmp_path, ROWS)
    data = load_data(DataConfig(source="files", train_files=[path], max_bad_fraction=0.5, eval_fraction=0.5),
                     task="sft", run_dir=str(tmp_path / "run"))
    assert data.labels == []  # free text: no label column
    assert data.report.reasons == {"empty_completion": 1}
    bad = [json.loads(line) for line in (tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()]
    assert [(b["row"], b["reason"]) for b in bad] == [(4, "empty_completion")]
    both = pd.concat([data.train, data.eval])
    assert sorted(both["completion"]) == [" on the dog, twice", " on the mat", " world"]
    # without max_bad_fraction the one empty completion in four rows stops the run, naming the reason
    with pytest.raises(DataError, match="empty_completion"):
        load_data(DataConfig(source="files", train_files=[path]), task="sft")


def test_targets_are_the_completion_and_eos_token_by_token(tok):
    frame = pd.DataFrame(ROWS[:3]).assign(item_id=["i1", "i1", "i2"], label=None)
    rows, stats = _encode(frame, tok)
    assert stats.n_truncated == 0
    batch = collate(rows, np.arange(3), tok.pad_token_id)
    for b, r in enumerate(ROWS[:3]):
        prompt = tok(r["text"] + " =>")["input_ids"]
        completion = tok(r["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seq = prompt + completion
        assert batch["input_ids"][b, :len(seq)].tolist() == seq
        # position t predicts token t + 1: only completion tokens (and the EOS) are targets
        want = [-100] * (len(prompt) - 1) + completion + [-100] * (batch["input_ids"].shape[1] - len(seq) + 1)
        assert batch["lm_targets"][b].tolist() == want
        assert batch["prompt_mask"][b].tolist()[:len(seq)] == [1] * len(prompt) + [0] * len(completion)
    assert batch["labels"].tolist() == [-1, -1, -1]


def test_verbalized_labels_become_completions(tok):
    frame = pd.DataFrame({"item_id": ["i1", "i1"], "text": ["some text"] * 2, "annotator": ["a", "b"],
                          "label": ["not_toxic", "toxic"], "completion": [None, None]})
    rows, _ = _encode(frame, tok, labels=["not_toxic", "toxic"], verbalizers=["not toxic", "toxic"])
    for b, word in enumerate(["not toxic", "toxic"]):
        completion = rows.item_tokens[b][rows.prompt_lens[b]:]
        assert completion == tok(" " + word, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert rows.labels.tolist() == [0, 1]
    # built-in and synthetic sets train on their verbalized labels
    data = load_data(DataConfig(source="synthetic"), task="sft")
    assert data.train["completion"].isna().all() and data.labels == ["0", "1"]


def test_overflow_truncates_the_prompt_from_the_left_and_counts(tok):
    long_prompt = " ".join(["word"] * 40)
    frame = pd.DataFrame({"item_id": ["i1", "i2"], "text": [long_prompt, "short"], "annotator": ["a", "a"],
                          "label": None, "completion": [" the answer", " ok"]})
    rows, stats = _encode(frame, tok, max_length=16)
    assert (stats.n_rows, stats.n_truncated, stats.n_completion_cut) == (2, 1, 0)
    seq = rows.item_tokens[0]
    completion = tok(" the answer", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(seq) == 16 and seq[-len(completion):] == completion  # the completion is kept whole
    full_prompt = tok(long_prompt + " =>")["input_ids"]
    assert seq[:rows.prompt_lens[0]] == full_prompt[-(16 - len(completion)):]  # the prompt's end is kept
    with pytest.raises(DataError, match=r"1 of 2 train rows .* model.max_length=16.*Fix: raise model.max_length"):
        _encode(frame, tok, max_length=16, overflow="refuse")
    # a completion longer than max_length alone: one prompt token, the completion cut at the right
    assert fit([1, 2, 3], list(range(10, 30)), 8) == ([3], list(range(10, 17)))


def test_chat_rows_use_the_chat_template_and_refuse_without_one(tmp_path, tok):
    chat = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "annotator": "a"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "annotator": "b"},
            {"messages": [{"role": "user", "content": "no answer"}], "annotator": "b"}]
    path = _files(tmp_path, chat)
    cfg = DataConfig(source="files", train_files=[path], messages_column="messages", text_column="messages_text",
                     max_bad_fraction=0.5, eval_fraction=0.5)
    data = load_data(cfg, task="sft")
    assert data.report.reasons == {"malformed_messages": 1}
    frame = pd.concat([data.train, data.eval]).sort_values("annotator")
    rows, _ = _encode(frame, tok, chat=True)
    prompt = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True, tokenize=False)
    assert rows.item_tokens[0][:rows.prompt_lens[0]] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(rows.item_tokens[0][rows.prompt_lens[0]:]) == "4" + tok.eos_token
    template, tok.chat_template = tok.chat_template, None
    try:
        with pytest.raises(ConfigError, match="data.messages_column.*chat template"):
            _encode(frame, tok, chat=True)
    finally:
        tok.chat_template = template


def test_parse_label_takes_the_longest_verbalizer_the_text_starts_with():
    words = ["not toxic", "toxic", "not"]
    assert parse_label("  not toxic at all", words) == 0
    assert parse_label("toxic!", words) == 1
    assert parse_label("nothing", words) == 2  # 'not' is a prefix of 'nothing': the parse is by characters
    assert parse_label("maybe", words) == -1


def test_sft_config_checks():
    with pytest.raises(ConfigError, match="train.packing"):
        tiny_config("train.packing=true")
    with pytest.raises(ConfigError, match="multi_head cannot train model.task=sft"):
        tiny_config("model.task=sft", "adapter.kind=multi_head")
    with pytest.raises(ConfigError, match="distributed.zero_stage"):
        tiny_config("model.task=sft", "distributed.zero_stage=3")
    with pytest.raises(ConfigError, match="data.overflow"):
        tiny_config("model.task=sft", "data.overflow=drop")
    with pytest.raises(ConfigError, match="data.messages_column"):
        tiny_config("model.task=sft", "data.messages_column=messages")  # synthetic rows have no chat
