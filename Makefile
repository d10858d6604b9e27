# Two commands do all the set-up on a fresh machine:
#   make demo   renders the built-in test material through the shipped presets
#   make test   runs the test suite (starts a JACK dummy server for the live tests)
# TORCH_SPEC picks the torch build, e.g. TORCH_SPEC='torch==2.13.0' (CPU, default here) or a
# CUDA build on a GPU machine: make test TORCH_SPEC='torch'.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup system clean

demo: setup
	$(PY) run.py demo --overwrite

test: setup
	$(PY) -m pytest -q

setup: system $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

system:
	@bash .ci/system-packages.sh

clean:
	rm -rf $(VENV) demo-out
