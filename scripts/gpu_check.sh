#!/usr/bin/env bash
# One prepared device check (see BENCHMARKS.md): installs the missing pure-Python wheels, then runs the
# agreement check, the benchmark and a fixed-time run of the SPEC §6 MDP preset. Results go to $OUT.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax, orbax.checkpoint as o, chex; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
timeout 60 python3 scripts/gpu_agree.py 2>&1 | tee "$OUT/agree.txt"
timeout "${BENCH_SECONDS:-330}" python3 -m rl3jax bench --json "$OUT/bench.json" --repeats 3 \
  --only "${BENCH_ONLY:-mdp-rl2-transformer,mdp-rl3-transformer,grid13-rl2-transformer,grid13-rl3-transformer,grid13-rl3_coarse-transformer,many-mdp-rl2-transformer,many-mdp-rl3-transformer,bandit-rl2-transformer,bandit-rl3-transformer,mdp-rl2-gru,mdp-rl3-gru}" 2>&1 | grep -v Warning | tee "$OUT/bench.txt"
timeout "${TRAIN_SECONDS:-150}" python3 -m rl3jax train --preset mdp-h100 --algo rl3 --out /tmp/mdp-h100 \
  --no-progress --max-seconds "${TRAIN_BUDGET:-100}" 2>&1 | tail -5 | tee "$OUT/train.txt"
cp /tmp/mdp-h100/metrics.csv "$OUT/train_metrics.csv" 2>/dev/null
true
