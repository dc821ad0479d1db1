#!/usr/bin/env bash
# Whole-process wall time of a tiny training run (issue 22's matched MLP workload: CartPole-v1, RL², MLP 256-256,
# 32 envs x H = 100, 4 epochs x 4 minibatches, no KL stop; 2 iterations in one chunk, no evaluation), N rounds;
# each round runs every given checkout in turn (interleaved), with this repository's .venv and the checkout
# first on PYTHONPATH. CHECKOUT[:TARGET_KL] (default none; a checkout before issue 22 needs a number, e.g. 1e9).
# Prints one wall time per run and the median per checkout:
#   scripts/process_time.sh [N] [CHECKOUT[:TARGET_KL] ...]     e.g. scripts/process_time.sh 5 /work/main:1e9 .
set -euo pipefail
n=${1:-3}
shift || true
checkouts=("${@:-.}")
py=$(pwd)/.venv/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$n"); do
  for spec in "${checkouts[@]}"; do
    c=${spec%%:*}; kl=none; [[ $spec == *:* ]] && kl=${spec#*:}
    dir=$(cd "$c" && pwd)
    t0=$(date +%s.%N)
    (cd "$dir" && PYTHONPATH="$dir" "$py" -m rl3jax train --env CartPole-v1 --algo rl2 --model markov --horizon 100 \
      --iters 2 --no-progress --set num_envs=32 --set minibatch_envs=8 --set epochs=4 --set target_kl="$kl" \
      --set chunk_iters=2 --set checkpoint_every=2 --out "$out/run$i-$(echo "$dir" | md5sum | cut -c1-8)" \
      > /dev/null 2>&1)
    t=$(echo "$(date +%s.%N) - $t0" | bc)
    echo "$dir run $i: $t s"
    echo "$t" >> "$out/$(echo "$dir" | md5sum | cut -c1-8).times"
  done
done
for spec in "${checkouts[@]}"; do
  dir=$(cd "${spec%%:*}" && pwd)
  sort -n "$out/$(echo "$dir" | md5sum | cut -c1-8).times" | awk -v d="$dir" '{a[NR]=$1} END {print d, "median:", a[int((NR+1)/2)], "s"}'
done
