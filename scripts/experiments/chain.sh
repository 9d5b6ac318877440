#!/bin/bash
# issue 11 measurement chain for one data set: tune (TRIALS per kind, default 4; the 2-block SmolLM2 saved once by
# save_cut.py, identical outputs), then compare --from-tune over seeds 0,1,2 on the eval split.
# Every trial trains seeds TRIAL_SEEDS (default 0,1) and is scored by their mean; CONCURRENCY trials at a time (default 1).
# Usage: RUNS=runs/comparison TRIALS=4 scripts/experiments/chain.sh pipa|convabuse [--set key=value ...]
# Extra --set arguments are passed to the tune (every kind; adapter.hypernet.* only changes hyper_lora).
d=$1; shift
cd "$(dirname "$0")/../.." || exit 1
R=${RUNS:-runs/comparison}; N=${TRIALS:-4}; mkdir -p "$R"
[ -d "$R/smollm2-135m-2blocks" ] || .venv/bin/python scripts/experiments/save_cut.py "$R/smollm2-135m-2blocks"
export HF_HUB_OFFLINE=1 WANDB_MODE=offline OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
K=hyper_lora,shared_lora,annotator_embedding,multi_head,per_annotator_lora
t0=$(date +%s)
.venv/bin/hyperscale tune configs/tune_$d.yaml --kinds $K --trials $N --set model.name_or_path=$R/smollm2-135m-2blocks --set model.num_layers=null --set logging.wandb.mode=disabled "$@" --trial-seeds ${TRIAL_SEEDS:-0,1} --concurrency ${CONCURRENCY:-1} --run-dir $R/$d/tune > $R/$d.tune.log 2>&1
t1=$(date +%s)
echo "tune_wall_s $((t1-t0))" > $R/$d.walls
.venv/bin/hyperscale compare --from-tune $R/$d/tune --seeds ${SEEDS:-0,1,2} --run-dir $R/$d/compare > $R/$d.compare.log 2>&1
t2=$(date +%s)
echo "compare_wall_s $((t2-t1))" >> $R/$d.walls
