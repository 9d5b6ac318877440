"""The data layer: perspectivist rows (text, annotator, label, [task, language]) from
files, built-in sets or a generator, checked, split by item, mapped to indices, batched.

    config.py     DataConfig, SyntheticConfig (read when the YAML is)
    rows.py       CSV / JSONL / Parquet -> one long frame, malformed rows counted by reason
    builtin.py    ConvAbuse and pipa_toxicity loaders;  synthetic.py  the rule-disagreeing generator
    load.py       load_data: any source -> checked, subsampled, split by item (splits.py)
    report.py     what loading found (data_report.json, bad_rows.jsonl)
    vocab.py      condition ids -> indices (saved with every run and checkpoint)
    aggregate.py  majority labels for the aggregate-then-train baseline
    batches.py    rows -> token ids + condition indices; the resumable epoch sampler
    sft.py        model.task=sft rows: prompt + completion + EOS, completion targets, overflow
    packing.py    train.packing: rows packed into max_length sequences (segments, block mask)

Importing this package loads nothing heavy: import the module you need.
"""
