# make demo: set up .venv and train the classifier on the embedded digits dataset.
# make test: set up .venv, then ruff, torchstyle lint (on itself), mypy (strict) and pytest.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-fresh test-load lint format bench bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision pinned here (not in pyproject) to the builds this project is tested with.
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/torchstyle train --model classifier --data digits --epochs 8 --run-dir runs/demo --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/torchstyle lint torchstyle bench tests
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The quick loop while editing: everything but the tests that train in subprocesses.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

# The suite with a fresh interpreter for every CLI run (no forking from a torch-imported server).
test-fresh: $(STAMP)
	TORCHSTYLE_TEST_FRESH_PROCESSES=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

# The suite while a busy loop keeps every core busy, three times in a row: no test that load can
# break. Takes about twice as long as `make test` on an otherwise idle machine.
test-load: $(STAMP)
	$(BIN)/python tests/under_load.py --runs 3 -- $(BIN)/python -m pytest -q -n 2 --dist loadfile

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# CPU benchmarks.
bench: $(STAMP)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/lint_speed.py

# GPU benchmarks (data pipelines, multi-GPU wrappers); on a CPU they run tiny smoke versions.
bench-gpu: $(STAMP)
	$(BIN)/python bench/data.py
	$(BIN)/python bench/strategies.py

clean:
	rm -rf $(VENV) runs .pytest_cache
