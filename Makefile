# One entry point for people and CI: `make test` and `make demo` build the
# virtualenv themselves on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first and pinned: the CPU build of 2.13.0 is on local disk; an
	# unpinned resolve would pull a multi-GB CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[eval,simulate,finetune,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check refmoo simulate eval finetune tests benchmarks

test: lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest

# The main experiment on the embedded miniature (about 5 minutes on 2 idle cores;
# benchmarks/results/finetune_experiment.md).
demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m finetune experiment --config miniature --out runs/demo

bench: $(STAMP)
	$(PY) benchmarks/bench_min_norm.py

# Execute the notebooks in place, with their outputs (a few minutes on 2 cores); commit
# the result. tests/test_notebooks.py fails on a notebook whose cells changed since.
notebooks: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) notebooks/execute.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
