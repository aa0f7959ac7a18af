# The two commands of the README: `make demo` and `make test`. Both create ./.venv with
# Python 3.11 (or PYTHON) and install the engine into it; torch is pinned and installed first,
# from TORCH_INDEX when given (https://download.pytorch.org/whl/cpu: the CPU wheel where pip's
# own index would give a multi-GB CUDA build, as PyPI does on Linux).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "triton==3.9.0"  # the GPU kernels; --no-deps keeps the CPU torch
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/ctsr demo --out demo-output

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache
