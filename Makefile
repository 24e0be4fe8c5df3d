# Two commands for a fresh machine: `make demo` (install, then the whole chain on the synthetic cohort)
# and `make test` (install, then the test suite). TORCH_SPEC picks the PyTorch build installed first.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: install test demo lint clean

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(PY) -m preprocess --dataset demo --check

clean:
	rm -rf $(VENV) *.egg-info
