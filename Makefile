# Every target sets up .venv by itself on first use (only python3 needed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

ENV ?= mdp
VARIANT ?=
ALGO ?= rl3
MODEL ?= transformer
ITERS ?=
PRESET ?=
OUT ?= runs/$(ENV)-$(ALGO)-$(MODEL)
RUN ?=
EPISODES ?= 1000
EXTRA ?=
REPORT_OUT ?= $(firstword $(RUN))/report

.PHONY: venv train eval bench report test test-all clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	$(BIN)/rl3jax train --env $(ENV) $(if $(VARIANT),--variant $(VARIANT)) --algo $(ALGO) --model $(MODEL) \
	  $(if $(ITERS),--iters $(ITERS)) $(if $(PRESET),--preset $(PRESET)) --out $(OUT) $(EXTRA)

eval: $(STAMP)
	$(BIN)/rl3jax eval --run $(RUN) --episodes $(EPISODES) --json $(RUN)/eval.json $(EXTRA)

# RUN="runs/a runs/b ...": one report of several runs (seeds and algorithms side by side) into REPORT_OUT
report: $(STAMP)
	$(BIN)/rl3jax report $(RUN) --out $(REPORT_OUT) --episodes $(EPISODES) $(EXTRA)

bench: $(STAMP)
	$(BIN)/rl3jax bench --json BENCH.json $(EXTRA)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m '' tests

clean:
	rm -rf $(VENV) runs .pytest_cache
