"""The issue-14 recipe generators: deterministic, split as promised, ceilings from the closed form."""

import itertools

import numpy as np
import pytest

from hyperscale.data.synthetic_sft import (
    KEYS,
    LANGUAGES,
    WORDS,
    HyperXSpec,
    completion_scores,
    held_out_pairs,
    hyperdecoder_frames,
    hyperx_frames,
    key_blind_ceiling,
    latin_table,
    new_language_frame,
    shift,
    task_blind_ceiling,
)
from hyperscale.errors import ConfigError


def test_latin_table_rules_disagree_on_every_word():
    table = latin_table(8, 12, seed=3)
    assert table.shape == (8, 12)
    for row in table:  # every rule is a permutation of the words
        assert sorted(row) == list(range(12))
    for col in table.T:  # for each word, the 8 rules give 8 different outputs
        assert len(set(col)) == 8
    assert not np.array_equal(table, latin_table(8, 12, seed=4))
    np.testing.assert_array_equal(table, latin_table(8, 12, seed=3))


def test_key_blind_ceiling_is_one_over_rules_and_counts_agreement():
    c = key_blind_ceiling(latin_table(8, 8, 0), 2)
    assert c["exact_match"] == 1 / 8  # the first word already differs between every pair of rules
    assert 1 / 8 <= c["token_accuracy"] <= 1 / 8 + 1 / 16  # the second may coincide: at most 1/8 of it
    # Two rules that agree on word 0 only: a key-blind model gets word 0 always, the others half the time.
    c = key_blind_ceiling(np.array([[0, 1, 2], [0, 2, 1]]), 1)
    assert c["token_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert c["exact_match"] == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_hyperdecoder_frames_follow_the_rule_and_never_share_prompts():
    frames = hyperdecoder_frames(n_rules=4, n_words=6, n_out=2, n_prompts=400, seed=1)
    table = latin_table(4, 6, 1)
    texts = {s: set(f.text) for s, f in frames.items()}
    assert sum(len(f) for f in frames.values()) == 400 and len(frames["eval"]) == 80
    assert not texts["train"] & texts["eval"] and not texts["train"] & texts["validation"]
    entries = set()
    for _, row in frames["train"].iterrows():
        *rest, x = row.text.split()
        key, = [w for w in rest if w in KEYS]
        k, xi = KEYS.index(key), WORDS.index(x)
        y1 = table[k, xi]
        assert row.completion == f" {WORDS[y1]} {WORDS[table[k, y1]]}" and row.rule == key
        entries.add((k, xi))
    assert len(entries) == 4 * 6  # every rule entry is trained (through other prompts than eval's)
    assert len({r.text.split().index(r.rule) for r in frames["train"].itertuples()}) == 4  # the key moves
    again = hyperdecoder_frames(n_rules=4, n_words=6, n_out=2, n_prompts=400, seed=1)
    assert all(again[s].equals(frames[s]) for s in frames)
    with pytest.raises(ConfigError, match="n_rules"):
        latin_table(9, 6, 0)


def test_hyperx_held_out_pairs_appear_only_in_eval():
    spec = HyperXSpec(prompts_per_pair=20)
    frames = hyperx_frames(spec)
    held = set(held_out_pairs(spec))
    assert len(held) == len(spec.languages)
    assert {t for t, _ in held} == set(spec.tasks)  # every task is held out somewhere ...
    train_pairs = set(zip(frames["train"].task, frames["train"].language))
    assert not held & train_pairs and not held & set(zip(frames["validation"].task, frames["validation"].language))
    for t, lang in held:  # ... and still trained with other languages, as the language with other tasks
        assert any(p[0] == t for p in train_pairs) and any(p[1] == lang for p in train_pairs)
    unseen = frames["eval"][frames["eval"].split == "eval_unseen"]
    assert set(zip(unseen.task, unseen.language)) == held and len(unseen) == 20 * len(held)
    seen_eval = frames["eval"][frames["eval"].split == "eval_seen"]
    assert not set(seen_eval.text + seen_eval.annotator) & set(frames["train"].text + frames["train"].annotator)
    row = frames["train"].iloc[0]
    words = LANGUAGES[row.language]
    expected = [words[shift(words.index(w) + 1, row.task) - 1] for w in row.text.split()]
    assert row.completion == " " + " ".join(expected) and row.annotator == f"{row.task}|{row.language}"


def test_shifts_wrap_and_tasks_disagree_everywhere():
    assert shift(9, "t0") == 1 and shift(1, "t2") == 9 and shift(8, "t3") == 2
    for n in range(1, 10):
        assert len({shift(n, t) for t in ("t0", "t1", "t2", "t3")}) == 4


def test_task_blind_ceiling_and_new_language_rows():
    spec = HyperXSpec()
    # 5 languages x 4 tasks, one pair per language held out: 3 seen tasks each.
    assert task_blind_ceiling(spec) == {"seen_pairs": pytest.approx(1 / 3), "held_out_pairs": 0.0}
    new = new_language_frame(spec, "es")
    assert set(new.language) == {"es"} and list(new.task[:4]) == list(spec.tasks)  # interleaved
    with pytest.raises(ConfigError, match="already"):
        new_language_frame(spec, "en")


def test_completion_scores_word_by_word():
    s = completion_scores([" red blue", " sun moon", " a b"], ["red blue", " sun star", " a b c"])
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert s["token_accuracy"] == pytest.approx(5 / 6)  # the extra word of the last one is not scored


def test_every_word_is_one_token_for_smollm2():
    from hyperscale.backbones.embedded import tokenizer

    tok = tokenizer()
    for w in itertools.chain(KEYS, WORDS, LANGUAGES["en"], LANGUAGES["ord"], LANGUAGES["low"], LANGUAGES["up"]):
        assert len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1, w


def test_hyperx_fillers_give_distinct_prompts_over_every_number():
    spec = HyperXSpec(n_content=1, n_fillers=2, prompts_per_pair=60)
    frames = hyperx_frames(spec)
    train = frames["train"]
    assert all(len(t.split()) == 3 for t in train.text)
    seen_eval = frames["eval"][frames["eval"].split == "eval_seen"]
    assert not set(seen_eval.text + seen_eval.annotator) & set(train.text + train.annotator)
    for pair, rows in train.groupby("annotator"):  # every number of a seen pair is trained (a lookup can answer)
        assert len({t.split()[-1] for t in rows.text}) >= 8, pair
    row = train.iloc[0]
    words = LANGUAGES[row.language]
    assert row.completion == " " + words[shift(words.index(row.text.split()[-1]) + 1, row.task) - 1]
