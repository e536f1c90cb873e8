# VQA pipeline: make <stage> [CONFIG=configs/x.yaml] [ARGS="section.key=value ..."] [NPROC=N]
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
ARGS ?=
NPROC ?= 1

# NPROC > 1: one process per GPU, or NPROC CPU ranks (gloo) when there is no GPU. `accelerate launch --cpu`
# starts only one process (accelerate #2741), hence ACCELERATE_USE_CPU with --multi_gpu.
ifeq ($(NPROC),1)
LAUNCH := $(PY)
else
LAUNCH := env $$($(PY) -c 'import torch; print("" if torch.cuda.is_available() else "ACCELERATE_USE_CPU=1")') \
	$(VENV)/bin/accelerate launch --multi_gpu --num_processes $(NPROC) --num_machines 1 --mixed_precision no --dynamo_backend no
endif

.DEFAULT_GOAL := help
.PHONY: help setup data features train eval inspect report serve baselines bench bench-features demo test test-fast test-browser lint clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --no-cache-dir -q -c constraints.txt -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed ## Create .venv and install the project (+ dev tools); fast when nothing changed

data: setup ## Write the synthetic 7W world (official layout) to the config's data paths
	$(PY) -m vqa.commands data --config $(CONFIG) $(ARGS)

features: setup ## Extract CNN grid features of every image into <run.dir>/features/ (resumable)
	$(LAUNCH) -m vqa.commands features --config $(CONFIG) $(ARGS)

train: setup ## Train the model on the train split, keep the best epoch on val (resumable)
	$(LAUNCH) -m vqa.commands train --config $(CONFIG) $(ARGS)

eval: setup ## Score eval.split (default test) in the official protocol -> <run.dir>/eval/<split>/
	$(LAUNCH) -m vqa.commands eval --config $(CONFIG) $(ARGS)

inspect: setup ## Attention maps: one PNG per question + index.html, and explorer.html (the whole split) in <run.dir>/inspect/
	$(PY) -m vqa.commands inspect --config $(CONFIG) $(ARGS)

report: inspect ## The same as `make inspect` (vqa7w inspect)

$(VENV)/.serve-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --disable-pip-version-check --no-cache-dir -q -c constraints.txt -e '.[serve]'
	@touch $@

serve: setup $(VENV)/.serve-installed ## A local page (127.0.0.1:7860) to ask a trained run about your own photo (ARGS="run.dir=runs/x --port N")
	$(PY) -m vqa.commands serve --config $(CONFIG) $(ARGS)

# the honest baselines: each trains and evaluates in <run.dir>_<name> on the main run's feature store
BASELINES ?= no_supervision no_attention image_only blind answer_only
BASELINE_no_supervision := model.variant=attention train.attention_supervision=0
BASELINE_no_attention := model.variant=no_attention
BASELINE_image_only := model.variant=image_only
BASELINE_blind := model.variant=blind
BASELINE_answer_only := model.variant=answer_only

baselines: setup ## Train + eval the honest baselines (no_supervision, no_attention, image_only, blind, answer_only) in <run.dir>_<name>
	@dirs=$$($(PY) -c 'import sys; from vqa.config import load_config; from vqa.features.store import features_dir; c = load_config(sys.argv[1], sys.argv[2:]); print(c.run.dir, features_dir(c))' $(CONFIG) $(ARGS)); \
	set -- $$dirs; run_dir=$$1; store=$$2; \
	$(foreach b,$(BASELINES),$(MAKE) --no-print-directory features train eval CONFIG=$(CONFIG) \
	  ARGS="$(ARGS) run.dir=$${run_dir}_$(b) features.dir=$$store $(BASELINE_$(b))" || exit 1;)

bench: setup ## Speed + memory ratios of this machine -> <run.dir>/bench/bench.json, bench.png (ARGS="--only training")
	@ann=$$($(PY) -c 'import sys; from vqa.config import load_config; print(load_config(sys.argv[1], [a for a in sys.argv[2:] if "=" in a and not a.startswith("-")]).data.annotations)' $(CONFIG) $(ARGS)); \
	test -f "$$ann" || $(MAKE) --no-print-directory data CONFIG=$(CONFIG)
	$(PY) -m vqa.commands bench --config $(CONFIG) $(ARGS)

bench-features: setup ## Only the extraction part of `make bench`
	$(MAKE) --no-print-directory bench CONFIG=$(CONFIG) ARGS="$(ARGS) --only extraction"

demo: setup ## The offline demo: data -> features -> train -> eval (val) -> the blind baseline -> eval (test) -> inspect, timed
	$(PY) -m vqa.commands demo --config $(CONFIG) $(ARGS)

test: setup ## Run the whole test suite (the browser tests run when Chromium is installed, else they are skipped)
	$(PY) -m pytest -q

test-fast: setup ## The fast lane while editing: unit tests, no stage run as a process, no browser (a few minutes)
	$(PY) -m pytest -q -m "not slow and not browser"

test-browser: setup ## Only the tests in Chromium (the explorer, the live page); fails without it (apt-get install chromium)
	VQA_REQUIRE_BROWSER=1 $(PY) -m pytest -q -m browser

lint: setup ## ruff check
	$(VENV)/bin/ruff check .

clean: ## Remove generated data and runs (keeps .venv)
	rm -rf data/synth7w data/synth7w_full $(foreach r,default pointing full full_pointing,runs/$(r) $(foreach b,no_supervision no_attention image_only blind answer_only,runs/$(r)_$(b)))
