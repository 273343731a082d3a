# hlrp: the two commands (see README.md)
#   make demo   set up .venv, build the embedded data, run the main-job notebooks, print where results are
#   make test   same setup, then the whole suite: unit + integration tests, then nbval over notebooks/
# Both are idempotent: finished install steps are skipped (a stamp keyed on pyproject.toml), data is not rebuilt.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HLRP := $(VENV)/bin/hlrp
STAMP := $(VENV)/.hlrp-setup-$(shell md5sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup data demo test test-unit test-integration test-notebooks lab clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, with pip: pip takes the CPU wheel on disk here (uv does not read pip's find-links and would fetch a
	# multi-GB CUDA build); a GPU user installs their CUDA build of 2.13.0 first and pip keeps it.
	$(PY) -m pip install --quiet "torch==2.13.0" uv
	# the rest with uv (parallel resolve + install: cold cache 2.5x faster than pip here, tools/bench_install.sh);
	# uv keeps the torch installed above (2.13.0+cpu satisfies torch==2.13.0), the check below proves it
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[dev]"
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(PY) -m ipykernel install --sys-prefix --name hlrp --display-name hlrp
	@rm -f $(VENV)/.hlrp-setup-* && touch $@

data: setup
	$(HLRP) data make-demo

demo: data
	$(HLRP) demo

test: data
	$(PY) -m pytest tests $(PYTEST_ARGS)
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout 600 notebooks $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: data
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-notebooks: data
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout 600 notebooks $(PYTEST_ARGS)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root,)

clean-outputs:
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
