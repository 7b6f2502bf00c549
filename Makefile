# Each target creates (or reuses) its own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ASSEMBLE_DATA_DIR ?= $(abspath ../shared/data)
export ASSEMBLE_DATA_DIR
export TF_CPP_MIN_LOG_LEVEL ?= 2

MODEL ?= assemble_resnet50
# `make test` also installs the `test-torch` extra (torch, torchvision, timm: about 5.5 GB) so the
# weight-conversion tests run; `make test WITH_TORCH=0` leaves it out and those tests skip.
WITH_TORCH ?= 1
TORCH_STAMP := $(VENV)/.installed-convert-stamp

.PHONY: venv test summary train clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,test-torch]'
	touch $(TORCH_STAMP)

venv: $(STAMP)

## Run the whole test suite.
# Two pytest workers (pytest-xdist), whole files per worker (module fixtures run once). The
# recipe file goes first: it is the longest (every packaged recipe through the programs, its
# own subprocesses two at a time), and the other worker runs the rest of the suite meanwhile.
test: $(STAMP) $(if $(filter 1,$(WITH_TORCH)),$(TORCH_STAMP))
	$(BIN)/python -m pytest -q -rs -n 2 --dist loadfile tests/test_recipes_cli.py tests

## Build a named model and print its summary and parameter count.
summary: $(STAMP)
	$(BIN)/python -m official.summary --model=$(MODEL)

## Train the smoke recipe (a CPU learning check); DATA / MODEL_DIR can be overridden.
# Without the shared data, DATA is tfds:imagenette/160px: TFDS downloads and prepares it on
# first use (progress shown); offline, the error says what to do instead.
DATA ?= $(if $(wildcard $(ASSEMBLE_DATA_DIR)/imagenette2-224),$(ASSEMBLE_DATA_DIR)/imagenette2-224,tfds:imagenette/160px)
MODEL_DIR ?= runs/smoke
train: $(STAMP)
	$(BIN)/python -m official.train --flagfile=official/configs/smoke.cfg --data=$(DATA) --model_dir=$(MODEL_DIR)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
