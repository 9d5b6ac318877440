#!/bin/bash
# hyper_lora validation pilot (issue 11, session 7): the residual form with the A/B heads at 0.1x lr (`res_h0.1`),
# plus one option per variant, seeds 0 and 1, eval.split=validation (the eval split is never encoded).
# Usage: [VARIANTS="res_h0.1 res_h0.1_ch64 ..."] scripts/experiments/pilot.sh convabuse|pipa
# Needs the 2-block SmolLM2 cut at runs/comparison/smollm2-135m-2blocks (scripts/experiments/save_cut.py).
# Prints "DATASET VARIANT SEED val-macro-F1(decision) val-macro-F1(argmax) val-soft-CE" per run.
D=$1
cd "$(dirname "$0")/../.." || exit 1
for seed in 0 1; do
for v in ${VARIANTS:-res_h0.1 res_h0.1_ch64 res_h0.1_bias_ch64 res_h0.1_cdim16 res_h0.1_drop0.1}; do
  extra=""
  case $v in
    res_h0.1_ch64) extra="--set adapter.hypernet.condition_head=64";;
    res_h0.1_bias_ch64) extra="--set adapter.hypernet.condition_head=64 --set adapter.hypernet.condition_bias=true";;
    res_h0.1_cdim16) extra="--set adapter.hypernet.condition_dim=16";;
    res_h0.1_drop0.1) extra="--set adapter.hypernet.dropout=0.1";;
  esac
  out=runs/pilot7/$D/$v/seed$seed
  [ -f "$out/eval.json" ] || OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 WANDB_MODE=offline .venv/bin/hyperscale train \
    configs/tune_$D.yaml --no-ray --run-dir "$out" \
    --set model.name_or_path=runs/comparison/smollm2-135m-2blocks --set model.num_layers=null \
    --set eval.split=validation --set eval.decision=validation --set logging.wandb.mode=disabled \
    --set adapter.kind=hyper_lora --set adapter.hypernet.shared_base=true --set adapter.hypernet.head_lr_scale=0.1 \
    --set train.seed=$seed $extra > "runs/pilot7/$D.$v.$seed.log" 2>&1 || echo "FAIL $v $seed"
  .venv/bin/python -c "import json;m=json.load(open('$out/eval.json'));print('$D $v $seed', round(m['macro_f1'],4), round(m['argmax']['macro_f1'],4), round(m['soft_ce'],4))"
done; done
