"""Generated prompt -> completion sets for the issue-14 recipes (Hyperdecoders, Hyper-X).

Both are deterministic per seed, use only words that SmolLM2's tokenizer keeps as single
tokens after a space, and come with the closed-form ceiling of a model that cannot see the
condition the rule depends on.

**Hyperdecoders** (`hyperdecoder_frames`): a prompt is a few filler words, one *key* word among
them and a content word x last, "road fox quiet red"; the completion applies the key's rule
twice, " m(x) m(m(x))" (" gold rain"), so the second word is the rule applied to the word just
generated. There are K keys (rules) over V words; rule k is row k of a Latin rectangle
(m_k(x) = sigma((pi[k] + rho[x]) mod V) with random permutations sigma, pi, rho), so for every
x the K rules give K different words. A model that ignores the key (the property of the
input the rule is chosen by) gets at most 1/K of the words and of the completions right
(`key_blind_ceiling` computes it from the table by enumeration). The rule is a K x V lookup
chosen by one prompt word at a random position: a shared rank-r LoRA must hold all K rules in
one update and route the key to the answer position through attention, while an instance-
conditioned adapter only needs the one rule its prompt selects, applied to the current token.

**Hyper-X** (`hyperx_frames`): tasks x languages. A language is a way to write the numbers
1..9 (English cardinals, ordinals, letters, French, Spanish); a task is a shift s on the
cycle 1..9. The prompt is n random numbers written in language l (after `n_fillers` filler words,
which give a pair more distinct prompts than its 9**n numbers); the completion is each
number shifted by task t's s, written in language l ("three seven" -> " four eight" for
s = +1 in English). The prompt shows the language, never the task; the rule depends on both.
Some (task, language) pairs are held out entirely from training (`held_out_pairs`): they
appear only in the eval frame. Every row's `annotator` column holds its pair id
("t1|fr"), so per_annotator_lora trained on the same files is a per-pair adapter, which
an unseen pair cannot have (it falls back to the mean LoRA).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hyperscale.errors import ConfigError

KEYS = ("cat", "dog", "fox", "owl", "bee", "cow", "pig", "hen", "rat", "ant", "bat", "elk")
FILLER_WORDS = ("the", "a", "quiet", "small", "old", "table", "window", "walk", "read", "house", "road", "chair",
                "paper", "cloud", "stone", "city")
WORDS = ("red", "blue", "green", "black", "white", "brown", "pink", "gold", "sun", "moon", "star", "rain",
         "snow", "wind", "fire", "sea")

LANGUAGES = {
    "en": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "ord": ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"),
    "low": ("a", "b", "c", "d", "e", "f", "g", "h", "i"),
    "up": ("A", "B", "C", "D", "E", "F", "G", "H", "I"),
    "fr": ("un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    "es": ("uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
}
# Task id -> shift on the cycle 1..9; distinct mod 9, so for any prompt the tasks disagree on every word.
TASK_SHIFTS = {"t0": 1, "t1": 2, "t2": -1, "t3": 3}
FRAME_COLUMNS = ["item_id", "text", "completion", "annotator", "task", "language", "rule", "split"]


# -- Hyperdecoders ------------------------------------------------------------------------------

def latin_table(n_rules: int, n_words: int, seed: int) -> np.ndarray:
    """(n_rules, n_words) int: rule k maps word index x to table[k, x]; each row is a permutation and
    each column has n_rules distinct entries (a Latin rectangle, randomly relabelled)."""
    if not 2 <= n_rules <= min(len(KEYS), n_words):
        raise ConfigError("n_rules", f"is {n_rules}, must be in 2..min({len(KEYS)}, n_words={n_words}).",
                          "use fewer rules or more words.")
    if n_words > len(WORDS):
        raise ConfigError("n_words", f"is {n_words}, at most {len(WORDS)} single-token words exist.",
                          f"use n_words <= {len(WORDS)}.")
    rng = np.random.default_rng([seed, 1])
    sigma, rho = rng.permutation(n_words), rng.permutation(n_words)
    pi = rng.permutation(n_words)[:n_rules]
    return sigma[(pi[:, None] + rho[None, :]) % n_words]


def apply_rule(table: np.ndarray, key: int, x: int, n_out: int) -> list[int]:
    """The completion's word indices: the key's rule applied n_out times, starting from x."""
    out = []
    for _ in range(n_out):
        x = int(table[key, x])
        out.append(x)
    return out


def key_blind_ceiling(table: np.ndarray, n_out: int) -> dict[str, float]:
    """Best token accuracy and exact match of a predictor that sees everything but the key, prompts
    uniform over (key, x): for each x, the completion (or word position) most keys agree on."""
    n_rules, n_words = table.shape
    exact, token = [], []
    for x in range(n_words):
        outs = [tuple(apply_rule(table, k, x, n_out)) for k in range(n_rules)]
        exact.append(max(outs.count(o) for o in set(outs)) / n_rules)
        token.append(np.mean([max(col.count(w) for w in set(col)) / n_rules
                              for col in (list(c) for c in zip(*outs))]))
    return {"token_accuracy": float(np.mean(token)), "exact_match": float(np.mean(exact))}


def hyperdecoder_frames(n_rules: int = 8, n_words: int = 8, n_out: int = 2, n_fillers: int = 3,
                        n_prompts: int = 3000, eval_fraction: float = 0.2, validation_fraction: float = 0.1,
                        seed: int = 0) -> dict[str, pd.DataFrame]:
    """{"train", "validation", "eval"} frames of n_prompts distinct prompts (key at a random position
    among n_fillers filler words, then x), split by prompt: no eval or validation prompt is trained on
    (every (key, x) rule entry is, through other prompts: the rules are a lookup, not a formula)."""
    table = latin_table(n_rules, n_words, seed)
    rng = np.random.default_rng([seed, 2])
    space = n_rules * n_words * (n_fillers + 1) * len(FILLER_WORDS) ** n_fillers
    if n_prompts > space // 2:
        raise ConfigError("n_prompts", f"is {n_prompts}, but only {space} distinct prompts exist.",
                          "ask for fewer prompts or more fillers.")
    seen, rows = set(), []
    while len(rows) < n_prompts:
        k, x, at = int(rng.integers(n_rules)), int(rng.integers(n_words)), int(rng.integers(n_fillers + 1))
        words = [FILLER_WORDS[i] for i in rng.integers(len(FILLER_WORDS), size=n_fillers)]
        words.insert(at, KEYS[k])
        text = " ".join([*words, WORDS[x]])
        if text in seen:
            continue
        seen.add(text)
        rows.append({"item_id": f"p{len(rows):05d}", "text": text,
                     "completion": " " + " ".join(WORDS[y] for y in apply_rule(table, k, x, n_out)),
                     "annotator": "all", "task": None, "language": None, "rule": KEYS[k]})
    frame = pd.DataFrame(rows)
    n_eval, n_val = round(eval_fraction * n_prompts), round(validation_fraction * n_prompts)
    frame["split"] = ["eval"] * n_eval + ["validation"] * n_val + ["train"] * (n_prompts - n_eval - n_val)
    frame = frame[FRAME_COLUMNS]
    return {s: frame[frame.split == s].reset_index(drop=True) for s in ("train", "validation", "eval")}


# -- Hyper-X ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HyperXSpec:
    """Which languages and tasks exist, which pairs are held out, and how many prompts each pair gets."""

    languages: tuple[str, ...] = ("en", "ord", "low", "up", "fr")
    tasks: tuple[str, ...] = ("t0", "t1", "t2", "t3")
    n_content: int = 2
    n_fillers: int = 0
    """Filler words before the numbers (16 possible each): more distinct prompts per pair, so seen pairs
    can be scored on prompts never trained on while every number of the pair is trained."""
    prompts_per_pair: int = 60
    """Distinct prompts per pair (of 9**n_content * 16**n_fillers): split into train / validation / eval
    for seen pairs."""
    eval_fraction: float = 0.25
    validation_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self):
        unknown = [lang for lang in self.languages if lang not in LANGUAGES]
        if unknown:
            raise ConfigError("languages", f"{unknown} are not defined.", f"use any of {sorted(LANGUAGES)}.")
        bad = [t for t in self.tasks if t not in TASK_SHIFTS]
        if bad:
            raise ConfigError("tasks", f"{bad} are not defined.", f"use any of {sorted(TASK_SHIFTS)}.")
        if not 1 <= self.prompts_per_pair <= self.space():
            raise ConfigError("prompts_per_pair", f"is {self.prompts_per_pair}, must be in 1..{self.space()}.",
                              "lower it or raise n_content / n_fillers.")

    def space(self) -> int:
        return 9 ** self.n_content * len(FILLER_WORDS) ** self.n_fillers


def held_out_pairs(spec: HyperXSpec) -> list[tuple[str, str]]:
    """One (task, language) pair per language, the task cycling (language j keeps out task j mod T):
    every language and every task is still trained in other pairs, so each held-out pair is a new
    combination of a known task and a known language."""
    return [(spec.tasks[j % len(spec.tasks)], lang) for j, lang in enumerate(spec.languages)]


def shift(number: int, task: str) -> int:
    """number in 1..9 shifted by the task's shift on the cycle 1..9."""
    return (number - 1 + TASK_SHIFTS[task]) % 9 + 1


def pair_id(task: str, language: str) -> str:
    return f"{task}|{language}"


def _pair_rows(task: str, language: str, prompts: np.ndarray, prefix: str, fillers=None) -> list[dict]:
    words = LANGUAGES[language]
    fillers = fillers if fillers is not None else [[] for _ in prompts]
    return [{"item_id": f"{prefix}{i:04d}", "text": " ".join([*pre, *(words[n - 1] for n in xs)]),
             "completion": " " + " ".join(words[shift(int(n), task) - 1] for n in xs),
             "annotator": pair_id(task, language), "task": task, "language": language, "rule": pair_id(task, language)}
            for i, (xs, pre) in enumerate(zip(prompts, fillers))]


def _prompts(spec: HyperXSpec, rng: np.random.Generator) -> tuple[np.ndarray, list[list[str]]]:
    """(prompts_per_pair, n_content) number tuples in 1..9 and each prompt's filler words; distinct prompts."""
    codes = rng.choice(spec.space(), spec.prompts_per_pair, replace=False)
    numbers = np.array([[c // 9 ** j % 9 + 1 for j in range(spec.n_content)] for c in codes])
    rest = codes // 9 ** spec.n_content
    f = len(FILLER_WORDS)
    return numbers, [[FILLER_WORDS[r // f ** j % f] for j in range(spec.n_fillers)] for r in rest]


def _prompts_prefixed(spec: HyperXSpec, rng: np.random.Generator, prefix: str) -> tuple:
    numbers, fillers = _prompts(spec, rng)
    return numbers, prefix, fillers


def hyperx_frames(spec: HyperXSpec = HyperXSpec()) -> dict[str, pd.DataFrame]:
    """{"train", "validation", "eval"}: seen pairs split by prompt; held-out pairs only in "eval"
    (their `split` column says `eval_unseen`, seen pairs' eval rows `eval_seen`)."""
    held = set(held_out_pairs(spec))
    out = {"train": [], "validation": [], "eval": []}
    for task, lang in itertools.product(spec.tasks, spec.languages):
        rng = np.random.default_rng([spec.seed, spec.tasks.index(task), spec.languages.index(lang)])
        rows = _pair_rows(task, lang, *_prompts_prefixed(spec, rng, f"{task}-{lang}-"))
        if (task, lang) in held:
            out["eval"] += [{**r, "split": "eval_unseen"} for r in rows]
            continue
        n_eval = round(spec.eval_fraction * len(rows))
        n_val = round(spec.validation_fraction * len(rows))
        out["eval"] += [{**r, "split": "eval_seen"} for r in rows[:n_eval]]
        out["validation"] += [{**r, "split": "validation"} for r in rows[n_eval:n_eval + n_val]]
        out["train"] += [{**r, "split": "train"} for r in rows[n_eval + n_val:]]
    return {k: pd.DataFrame(v, columns=FRAME_COLUMNS) for k, v in out.items()}


def new_language_frame(spec: HyperXSpec, language: str = "es", seed: int = 1) -> pd.DataFrame:
    """Rows of a language the run never saw, every task, tasks interleaved in row order (so the first k
    rows cover every task): for few-shot onboarding of the language."""
    if language in spec.languages:
        raise ConfigError("language", f"{language!r} is already one of the trained languages {spec.languages}.",
                          "onboard a language outside spec.languages.")
    per_task = []
    for j, task in enumerate(spec.tasks):
        rng = np.random.default_rng([seed, j])
        per_task.append(_pair_rows(task, language, *_prompts_prefixed(spec, rng, f"{task}-{language}-")))
    rows = [r for group in zip(*per_task) for r in group]
    return pd.DataFrame([{**r, "split": "onboard"} for r in rows], columns=FRAME_COLUMNS)


def task_blind_ceiling(spec: HyperXSpec) -> dict[str, float]:
    """What a model that sees the prompt (hence the language) but not the task can reach, trained on the
    train distribution (each language's seen tasks equally often, and the tasks' shifts disagree on every
    word): on seen pairs 1 / (seen tasks of the language), averaged over languages; on held-out pairs 0,
    since the training-optimal blind answer is some seen task's, which differs from the held-out task's
    on every word. Token accuracy and exact match are equal here."""
    held = set(held_out_pairs(spec))
    seen = {lang: [t for t in spec.tasks if (t, lang) not in held] for lang in spec.languages}
    return {"seen_pairs": float(np.mean([1.0 / len(v) for v in seen.values()])), "held_out_pairs": 0.0}


# -- scoring ------------------------------------------------------------------------------------

def completion_scores(gold: list[str], generated: list[str]) -> dict[str, float]:
    """Exact match (the whole completion, whitespace-normalised) and token accuracy (word by word,
    position by position, over the gold words) of generated completions."""
    if len(gold) != len(generated):
        raise ValueError(f"{len(gold)} gold completions but {len(generated)} generated")
    exact, right, total = 0, 0, 0
    for g, p in zip(gold, generated):
        gw, pw = g.split(), p.split()[: len(g.split())]
        exact += int(g.split() == p.split())
        right += sum(a == b for a, b in zip(gw, pw))
        total += len(gw)
    n = max(len(gold), 1)
    return {"exact_match": exact / n, "token_accuracy": right / max(total, 1), "n": len(gold)}
