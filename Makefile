# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

# pip shows what it downloads and installs (TensorFlow is about 600 MB): minutes, once.
$(STAMP): pyproject.toml
	@echo "== installing edgecnn with its training extra (TensorFlow, tf2onnx, LiteRT) into $(VENV)"
	@echo "== first run only: this takes a few minutes; later runs start at once"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[train,dev]'
	touch $(STAMP)
	@echo "== installed; next time 'make demo' and 'make test' skip this step"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgecnn demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Shipped bundles: one command each, from the public datasets (see README).
DATASETS ?= ../shared/datasets
.PHONY: bundles bundle-neu bundle-cwru bundle-mnist

bundles: bundle-neu bundle-cwru bundle-mnist

# `edgecnn recipe X` prints the shipped recipe of the task table (data folder, train and
# export options); nothing of it is repeated here.
bundle-neu bundle-cwru bundle-mnist: bundle-%: $(STAMP)
	$(BIN)/edgecnn train --out runs/$* --json runs/$*-train.json \
	    --data $(DATASETS)/$$($(BIN)/edgecnn recipe $* --step data) $$($(BIN)/edgecnn recipe $* --step train)
	$(BIN)/edgecnn export runs/$* --out deploy/bundles/$* --json runs/$*-export.json $$($(BIN)/edgecnn recipe $* --step export)
