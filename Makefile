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

# The whole chain on the synthetic cohort: generate (on first use) and preprocess, TS1 on all five folds with the
# demo's short schedule (configs/datasets/demo.toml [train]), then the report comparing TS1 with both baselines on
# the same folds (paper Table 4 shape) in runs/demo/ts1/report/. The phantom's lesion masks are its truth, so the
# overlap baseline is shown with them (an oracle segmenter) and with the built-in PET segmenter; the atlas-subset
# analysis (every 3 of the 5 atlases, McNemar against all five) re-registers 3 test scans.
DEMO_FOLDS ?= 0 1 2 3 4
demo: install
	$(PY) -m preprocess --dataset demo
	for fold in $(DEMO_FOLDS); do $(PY) -m train ts1 --dataset demo --fold $$fold --overwrite --no-progress || exit 1; done
	$(PY) -m evaluate --dataset demo --run runs/demo/ts1 --lesion-source both --atlas-subset-scans 3

clean:
	rm -rf $(VENV) *.egg-info
