#!/usr/bin/env bash
# Whole-process wall time of a tiny training run (issue 22's matched MLP workload, 2 iterations), N times in turn:
#   scripts/process_time.sh [N]      (from the repository root; prints one wall time per run, then the median)
set -euo pipefail
n=${1:-3}
out=$(mktemp -d)
times=()
for i in $(seq "$n"); do
  t0=$(date +%s.%N)
  .venv/bin/rl3jax train --env CartPole-v1 --algo rl2 --model markov --horizon 100 --iters 2 --no-progress \
    --set num_envs=32 --set minibatch_envs=8 --set epochs=4 --set target_kl=none --set chunk_iters=2 \
    --set checkpoint_every=2 --out "$out/run$i" > /dev/null 2>&1
  times+=("$(echo "$(date +%s.%N) - $t0" | bc)")
  echo "run $i: ${times[-1]} s"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "median:", a[int((NR+1)/2)], "s"}'
rm -rf "$out"
