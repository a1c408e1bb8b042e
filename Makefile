# Two commands for a fresh machine: `make demo` and `make test`. Each builds .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fmkit-installed
DEMO := outputs/demo

.PHONY: venv demo test lint format lab bench clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fmkit pipeline --config configs/demo.yaml -o $(DEMO)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/whitening.py
	$(BIN)/python benchmarks/sbi.py
	$(BIN)/python benchmarks/td3dcnn.py
	$(BIN)/python benchmarks/explain.py
	$(BIN)/python benchmarks/throughput.py

clean-venv:
	rm -rf $(VENV)
