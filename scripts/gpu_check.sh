#!/usr/bin/env bash
# One prepared device check (see BENCHMARKS.md): installs the missing pure-Python wheels, then runs the
# phases named in PHASES (default: all, in this order) with results in $OUT:
#   agree  step-by-step vs full-sequence transformer agreement (scripts/gpu_agree.py)
#   bench  the benchmark workloads in BENCH_ONLY with the defaults
#   ab     A/B on the same machine: grid13 RL³ with sweep block 1
#   beyond issue 18's workloads: grid13 RL³ with the discovery-indexed estimator, garnet S=64 and S=4096 (RL², RL³)
#   train  a fixed-time run of the METHOD §6 MDP preset (TRAIN_BUDGET seconds of training)
# The phases' timeouts add up to ~17 minutes, more than one device call (10 min): run PHASES="agree bench" and then
# PHASES="ab beyond train" on the same warm machine. BENCH_FLAGS=--quick gives a CPU smoke run of this script.
set -u
OUT=${OUT:-/tmp/out}
PHASES=${PHASES:-agree bench ab beyond train}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
has() { case " $PHASES " in *" $1 "*) return 0;; *) return 1;; esac; }
BENCH="python3 -m rl3jax bench --repeats 3 ${BENCH_FLAGS:-}"
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
if has agree; then timeout 60 python3 scripts/gpu_agree.py 2>&1 | tee "$OUT/agree.txt"; fi
if has bench; then
  timeout "${BENCH_SECONDS:-300}" $BENCH --json "$OUT/bench.json" \
    --only "${BENCH_ONLY:-mdp-rl2-transformer,mdp-rl3-transformer,grid13-rl2-transformer,grid13-rl3-transformer,grid13-rl3_coarse-transformer,many-mdp-rl2-transformer,many-mdp-rl3-transformer,bandit-rl2-transformer,bandit-rl3-transformer,mdp-rl2-gru,mdp-rl3-gru}" \
    2>&1 | grep -v Warning | tee "$OUT/bench.txt"
fi
if has ab; then
  timeout "${AB_SECONDS:-150}" $BENCH --json "$OUT/ab_block1.json" --set vi_sweep_block=1 \
    --only grid13-rl3-transformer 2>&1 | grep -v Warning | tee "$OUT/ab_block1.txt"
fi
if has beyond; then
  timeout "${BEYOND_SECONDS:-240}" $BENCH --json "$OUT/beyond.json" --only grid13-rl3-transformer,\
grid13-rl3-discovery-transformer,garnet-s64-rl2-transformer,garnet-s64-rl3-transformer,\
garnet-s4096-rl2-transformer,garnet-s4096-rl3-transformer 2>&1 | grep -v Warning | tee "$OUT/beyond.txt"
fi
if has train; then
  timeout "${TRAIN_SECONDS:-150}" python3 -m rl3jax train --preset mdp-h100 --algo rl3 --out /tmp/mdp-h100 \
    --no-progress --max-seconds "${TRAIN_BUDGET:-100}" 2>&1 | tail -5 | tee "$OUT/train.txt"
  cp /tmp/mdp-h100/metrics.csv "$OUT/train_metrics.csv" 2>/dev/null
fi
true
