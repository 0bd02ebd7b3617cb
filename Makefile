# Two commands on a fresh clone: `make demo` and `make test`.
# Each creates .venv when it is missing. torch is pinned so pip takes the local CPU wheel
# (an unpinned torch pulls a CUDA build of several GB).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
CACHE := .cache/demo

VENV15 := .venv-monai15
VENVML := .venv-monailabel
VENVPHATE := .venv-phate
MONAI15 := "monai[nibabel,itk,ignite,fire,tqdm,tensorboard,einops]==1.5.2"

.PHONY: demo demo-full test test-monai15 test-monailabel benchmark-phate-env lint clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[data,bench,dev,tracking]" $(TORCH)
	touch $@

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

# The same suite under MONAI 1.5.2 (the version MONAI Label 0.8.5 runs with), in its own venv.
$(VENV15)/.installed: pyproject.toml
	test -x $(VENV15)/bin/python || $(PYTHON) -m venv $(VENV15)
	$(VENV15)/bin/python -m pip install -q $(TORCH)
	$(VENV15)/bin/python -m pip install -q -e ".[data,bench,dev]" $(MONAI15) $(TORCH)
	touch $@

test-monai15: $(VENV15)/.installed
	$(VENV15)/bin/python -m pytest -q -p no:cacheprovider tests

# MONAI Label 0.8.5 serving the bundles, in its own venv (about 8 GB): it installs here only with torch 2.14.1 and
# torchvision 0.29.1, runs bundles only under MONAI 1.5.2 (its infer task crashes in Spacingd under 1.6), and its
# server import breaks on pydicom 3. monai-ext goes in from its wheel, as a user would install it.
$(VENVML)/.installed: pyproject.toml
	test -x $(VENVML)/bin/python || $(PYTHON) -m venv $(VENVML)
	$(VENVML)/bin/python -m pip install -q --upgrade pip
	$(VENVML)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENVML)/bin/python -m pip install -q monailabel==0.8.5 $(MONAI15) "pydicom<3" "dicomweb-client==0.59.1" \
		"pynetdicom<3" "pytest>=7" torch==2.14.1 torchvision==0.29.1
	touch $@

# monai-ext is rebuilt from the working tree on every run (seconds), so the tests see the current code; its [data]
# extra (nilearn) generates the brain slices of the diffusion_segmentation test.
test-monailabel: $(VENVML)/.installed
	rm -rf build/wheels && $(VENVML)/bin/python -m pip wheel -q . --no-deps --no-build-isolation -w build/wheels
	$(VENVML)/bin/python -m pip install -q "$$(ls build/wheels/monai_ext-*.whl)[data]" $(MONAI15) torch==2.14.1 \
		torchvision==0.29.1
	$(VENVML)/bin/python -m pip install -q --force-reinstall --no-deps build/wheels/monai_ext-*.whl
	cd tests/monai_label && ../../$(VENVML)/bin/python -m pytest -q -p no:cacheprovider .

# The official CUTS condensation (multiscale-phate) for benchmarks/condensation.py only, in its own venv: the
# package never imports it.
$(VENVPHATE)/.installed:
	test -x $(VENVPHATE)/bin/python || $(PYTHON) -m venv $(VENVPHATE)
	$(VENVPHATE)/bin/python -m pip install -q multiscale-phate
	touch $@

benchmark-phate-env: $(VENVPHATE)/.installed

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

$(CACHE)/%/datalist.json: | $(VENV)/.installed
	$(PY) -m monai_ext make-phantoms --out $(CACHE)/$* --variant $* --n 120 --seed 0 --overwrite

# The flagship: evaluate the shipped structure_discovery weights on the 20 test phantoms, beside k-means and
# smoothing + k-means measured in the same run; the baselines that take minutes per volume (BM4D + k-means, k-means on
# the diffusion model's features and x0 prediction) are read from the committed results of the same volumes
# (`make demo-full` runs them too). Writes the table, metrics, hierarchy.json and a figure.
DISCOVERY_EVAL := "['bundles/structure_discovery/configs/train.json','bundles/structure_discovery/configs/evaluate.json']"
COMMITTED_BASELINES := benchmarks/results/discovery_regular.json/runs/regular/report

demo: $(VENV)/.installed $(CACHE)/regular/datalist.json
	$(PY) -m monai.bundle run --config_file $(DISCOVERY_EVAL) --dataset_dir $(CACHE)/regular \
		--eval_output_dir $(CACHE)/eval --compare_baselines true --baseline_methods "['kmeans','smooth_kmeans']" \
		--baseline_reference $(COMMITTED_BASELINES) --overwrite true
	@echo "figure: $(CACHE)/eval/discovery.png   report: $(CACHE)/eval/report.json"

demo-full: $(VENV)/.installed $(CACHE)/regular/datalist.json
	$(PY) -m monai.bundle run --config_file $(DISCOVERY_EVAL) --dataset_dir $(CACHE)/regular \
		--eval_output_dir $(CACHE)/eval --compare_baselines true --overwrite true
	@echo "figure: $(CACHE)/eval/discovery.png   report: $(CACHE)/eval/report.json"

clean-demo:
	rm -rf $(CACHE)

# The tables of README.md, the bundle READMEs and the result pages, from benchmarks/results/*.json.
.PHONY: docs
docs: $(VENV)/.installed
	$(PY) benchmarks/summarize.py --update
