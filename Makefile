# `make demo` and `make test` set everything up on a fresh machine: they create (or reuse) .venv,
# install a CPU build of torch first (a bare `torch` requirement can pull a multi-GB CUDA build),
# then the package with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On a Linux laptop without a local torch wheel, set TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.symdistill-installed

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,pyg]"
	touch $(STAMP)

# every demo run gets its own folder (config, seed, versions, data, model, formulas, report)
demo: $(STAMP)
	$(VENV)/bin/symdistill run --system spring --dim 2 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(PY) -m pytest -q --durations=12

clean-venv:
	rm -rf $(VENV)
