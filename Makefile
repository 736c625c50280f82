# One entry point for people and CI. `make demo` runs the main job and
# `make test` the test suite; both create the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup test test-tensorflow test-jax test-torch demo bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

# The whole suite on TensorFlow, then again on JAX and PyTorch (tests that
# need TensorFlow itself skip there).
test: setup
	@set -e; for backend in $(BACKENDS); do \
	  echo "=== pytest, KERAS_BACKEND=$$backend"; \
	  KERAS_BACKEND=$$backend $(BIN)/python -m pytest -n 2 $(PYTEST_ARGS); \
	done

test-%: setup
	KERAS_BACKEND=$* $(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

demo: setup
	KERAS_BACKEND=tensorflow $(BIN)/python -m stn_keras.demo

# Performance figures recorded in docs/BENCHMARKS.md (not run by `make test`).
bench: setup
	PYTHONPATH=. KERAS_BACKEND=tensorflow $(BIN)/python bench/bench_sampler.py
	PYTHONPATH=. KERAS_BACKEND=tensorflow $(BIN)/python bench/bench_distortions.py
	PYTHONPATH=. KERAS_BACKEND=tensorflow $(BIN)/python bench/bench_online_distortion.py
	PYTHONPATH=. KERAS_BACKEND=tensorflow $(BIN)/python bench/bench_serving.py
	PYTHONPATH=. KERAS_BACKEND=tensorflow $(BIN)/python bench/bench_inference.py
	@for backend in $(BACKENDS); do \
	  PYTHONPATH=. KERAS_BACKEND=$$backend $(BIN)/python bench/bench_training.py; \
	done

clean:
	rm -rf $(VENV) .pytest_cache runs
