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
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Shipped bundles: one command each, from the public datasets (see README).
DATASETS ?= ../shared/datasets
.PHONY: bundles bundle-neu bundle-cwru bundle-mnist

bundles: bundle-neu bundle-cwru bundle-mnist

bundle-neu: $(STAMP)
	$(BIN)/edgecnn train --task neu --data $(DATASETS)/neu/train --out runs/neu --json runs/neu-train.json
	$(BIN)/edgecnn export runs/neu --out deploy/bundles/neu --formats onnx,onnx-int8,tflite-int8 --float-first 2 --json runs/neu-export.json

bundle-cwru: $(STAMP)
	$(BIN)/edgecnn train --task cwru --data $(DATASETS)/cwru --out runs/cwru --json runs/cwru-train.json
	$(BIN)/edgecnn export runs/cwru --out deploy/bundles/cwru --json runs/cwru-export.json

bundle-mnist: $(STAMP)
	$(BIN)/edgecnn train --task mnist --data $(DATASETS)/mnist --out runs/mnist --json runs/mnist-train.json
	$(BIN)/edgecnn export runs/mnist --out deploy/bundles/mnist --json runs/mnist-export.json
