# Every target sets up .venv by itself on first use (only python3 needed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the package's extras installed into .venv (CI adds cluster and xland, so their tests run instead of skipping)
EXTRAS ?= test

ENV ?= mdp
VARIANT ?=
ALGO ?=
MODEL ?=
ITERS ?=
PRESET ?=
OUT ?= runs/$(ENV)$(if $(ALGO),-$(ALGO))$(if $(MODEL),-$(MODEL))
RUN ?=
EPISODES ?= 1000
EXTRA ?=
REPORT_OUT ?= $(firstword $(RUN))/report
RESUME ?=
QUICK ?= auto
ARGS ?=

.PHONY: require-run venv train eval bench report reproduce test test-all clean clean-runs help

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

# make train [ENV=..] [ALGO=..] [MODEL=..] [ITERS=..] [PRESET=..] [OUT=..] [RESUME=1] [EXTRA="--set lr=1e-3"]
# RESUME=1 continues the run in OUT (to ITERS in total); a resumed run keeps its settings, so PRESET is not passed.
train: $(STAMP)
	$(BIN)/rl3jax train $(if $(RESUME),--resume,--env $(ENV) $(if $(VARIANT),--variant $(VARIANT)) $(if $(ALGO),--algo $(ALGO)) \
	  $(if $(MODEL),--model $(MODEL)) $(if $(PRESET),--preset $(PRESET))) $(if $(ITERS),--iters $(ITERS)) --out $(OUT) $(EXTRA)

eval: require-run $(STAMP)
	$(BIN)/rl3jax eval --run $(RUN) --episodes $(EPISODES) --json $(RUN)/eval.json $(EXTRA)

# RUN="runs/a runs/b ...": one report of several runs (seeds and algorithms side by side) into REPORT_OUT
report: require-run $(STAMP)
	$(BIN)/rl3jax report $(RUN) --out $(REPORT_OUT) --episodes $(EPISODES) $(EXTRA)

require-run:
	@test -n "$(RUN)" || { echo "make $(firstword $(MAKECMDGOALS)) needs RUN=<run folder>, e.g. RUN=$(OUT)" >&2; exit 2; }

# On a machine whose JAX backend is the CPU, QUICK=auto runs the small workloads (bench --quick) and says so;
# QUICK=0 runs the accelerator-size ones anyway, QUICK=1 always the small ones.
bench: $(STAMP)
	@quick="$(QUICK)"; \
	if [ "$$quick" = auto ]; then \
	  if $(BIN)/python -c 'import sys, jax; sys.exit(jax.default_backend() != "cpu")' 2>/dev/null; then \
	    echo "make bench: no accelerator, running the small CPU workloads (--quick); QUICK=0 runs the full ones"; \
	    quick=1; else quick=0; fi; fi; \
	set -x; $(BIN)/rl3jax bench $$( [ "$$quick" = 1 ] && echo --quick ) --json BENCH.json $(EXTRA)

# make reproduce ARGS="mdp-h100 --dry-run": experiments/reproduce.py with the project's Python
reproduce: $(STAMP)
	$(BIN)/python experiments/reproduce.py $(ARGS)

.PHONY: lint
# ruff (pyflakes, isort, pyupgrade, bugbear; settings in pyproject.toml), no changes written
lint: $(STAMP)
	$(BIN)/ruff check .

# make study [ARGS="--resume"]: the laptop study (RL² vs RL³, bandits and MDPs, 2 seeds, 29 min measured on 2 cores) into
# docs/results/laptop (run folders in runs/study); ARGS="--tiny --out /tmp/s" for a smoke test, "--dry-run" to list
.PHONY: study
study: $(STAMP)
	$(BIN)/python experiments/reproduce.py laptop $(ARGS)

# make study-beyond [ARGS="--resume"]: RL² vs RL³ beyond the paper's families (garnet S=64 and S=256, DeepSea N=10)
# into docs/results/beyond (run folders in runs/study-beyond); same options as make study
.PHONY: study-beyond
study-beyond: $(STAMP)
	$(BIN)/python experiments/reproduce.py beyond $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m '' tests

# clean: the virtual environment and caches; runs/ (results) stay. clean-runs: the runs/ folder.
clean:
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './runs/*' -exec rm -rf {} +

clean-runs:
	rm -rf runs

help:
	@echo "make train [ENV=mdp|bandit|garnet|deepsea|grid11|grid13|a gymnax env] [VARIANT=v] [ALGO=rl2|rl3|rl3_coarse]"
	@echo "           [MODEL=transformer|gru|markov]"
	@echo "           [ITERS=N] [PRESET=name] [OUT=folder] [RESUME=1] [EXTRA='more rl3jax train flags']"
	@echo "make eval RUN=folder [EPISODES=1000]     make bench [QUICK=auto|0|1]     make reproduce ARGS='target ...'"
	@echo 'make report RUN="runs/a runs/b" [REPORT_OUT=dir]  (results table, learning and adaptation curves)'
	@echo 'make study [ARGS=--resume]                         (the laptop RL² vs RL³ study, 29 min measured)'
	@echo 'make study-beyond [ARGS=--resume]                  (RL² vs RL³ on garnets and DeepSea, laptop scale)'
	@echo "make lint (ruff)"
	@echo "make test | test-all                     make clean (venv, caches)       make clean-runs (runs/)"
