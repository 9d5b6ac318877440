"""Training: the loop (loop.py) and the components it calls.

    prepare.py      data, vocabulary, resume decision, rows, model; then the run files
    distributed.py  the process group and seeding
    engine.py       DeepSpeed: optimizer groups, LR schedule, ZeRO config
    meter.py        running sums between logged steps -> train records
    checkpoint.py   exact-resume checkpoints (no Ray: a launcher passes its own store)
    logger.py       metrics.jsonl, wandb, the console line, the progress bar
    zero3.py        what ZeRO-3 needs from this model
    faults.py       fault injection for the fault-tolerance tests
"""
