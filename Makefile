# Two commands on a fresh clone: `make demo` and `make test`.
# Each creates .venv when it is missing. torch is pinned so pip takes the local CPU wheel
# (an unpinned torch pulls a CUDA build of several GB).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
CACHE := .cache/demo

.PHONY: demo test lint clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[data,bench,dev]" $(TORCH)
	touch $@

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

$(CACHE)/%/datalist.json: | $(VENV)/.installed
	$(PY) -m monai_ext make-phantoms --out $(CACHE)/$* --variant $* --n 120 --seed 0 --overwrite

demo: $(VENV)/.installed $(CACHE)/regular/datalist.json $(CACHE)/irregular/datalist.json
	$(PY) -m monai_ext make-brains --out $(CACHE)/brains --n 4 --seed 0 --overwrite
	$(PY) -m monai_ext baselines --data $(CACHE)/regular --split test --out benchmarks/results/baselines_regular.json --overwrite
	$(PY) -m monai_ext baselines --data $(CACHE)/irregular --split test --out benchmarks/results/baselines_irregular.json --overwrite

clean-demo:
	rm -rf $(CACHE)
