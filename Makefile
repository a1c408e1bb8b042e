# Two commands for a fresh machine: `make demo` and `make test`. Each builds .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fmkit-installed
DEMO := outputs/demo
TEST_WORKERS ?= 2

.PHONY: venv demo test lint format lab bench claims clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fmkit pipeline --config configs/demo.yaml -o $(DEMO)

# the suite on TEST_WORKERS processes (pytest-xdist; tests/conftest.py groups them by file and shared fixture)
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

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

# every claim the kit tests, 5-fold over persons (about 90 min on 2 CPU cores); --commit: benchmarks/results/
claims: $(STAMP)
	$(BIN)/python benchmarks/claims.py

clean-venv:
	rm -rf $(VENV)
