# fedseg — the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of PyTorch; GPU hospitals use the CUDA build in Dockerfile.node instead.
TORCH_SPEC ?= torch==2.13.0
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install install-dev demo test lint format bench bench-quality compose-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/fedseg-demo $(DEMO_ARGS)

test: install-dev
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m benchmarks.aggregator_memory
	$(BIN)/python -m benchmarks.round_overhead
	$(BIN)/python -m benchmarks.privacy_filters
	$(BIN)/python -m benchmarks.data_path
	$(BIN)/python -m benchmarks.dpsgd_step
	$(BIN)/python -m benchmarks.sparse_wire

# TEST HARNESS: both images and the README's compose command on a real Docker engine, with
# stand-in base images (no registry needed); needs root the first time (deploy/README.md).
compose-check: install
	$(BIN)/python -m deploy.harness

# Centralised vs FedAvg vs privacy settings on a synthetic cohort: CSV, PNG, table.
bench-quality: install-dev
	$(BIN)/python -m benchmarks.quality --out var/bench-quality

clean:
	rm -rf $(VENV) var build *.egg-info
