#!/bin/bash
# hyper_lora / shared_lora step ratio, old tree vs this one, in alternating processes (each process
# interleaves the two kinds itself; see step.py). OLD: an extracted older tree, e.g.
#   mkdir -p /tmp/old && git archive 1e84408 | tar -x -C /tmp/old
# Usage: OLD=/tmp/old CLOCK=cpu ROUNDS=3 scripts/bench/ab.sh tiny|smol [REPS] [INNER]
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
for round in $(seq "${ROUNDS:-3}"); do
  for tree in old new; do
    if [ "$tree" = old ]; then R=${OLD:?set OLD to an older tree}; else R=$ROOT; fi
    (cd "$R" && CLOCK=${CLOCK:-wall} ROOT=$R MODEL=$1 REPS=${2:-5} INNER=${3:-3} HF_HUB_OFFLINE=1 \
      "$ROOT/.venv/bin/python" "$HERE/step.py" 2>&1 | tail -1 | sed "s/^/$tree /")
  done
done
