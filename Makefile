# Two entry points for a fresh machine (see README):
#   make app   - set up .venv and open the app on sample_data/
#   make test  - set up .venv and run every test
# Setup installs this checkout into .venv, editable, with the test pins: `dataset-inspector` and `import
# inspect_core` then work from any folder (bench scripts, pytest on one file).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: requirements.txt tests/requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/.installed

app: setup
	$(BIN)/dataset-inspector app sample_data

# Two passes, both always run: everything but the `serial` tests on the 2 cores at once (pytest-xdist), then the
# tests that start a Ray cluster, an S3 server or a browser, one at a time (tests/conftest.py SERIAL_FILES).
test: setup
	bash .ci/ensure_chromium.sh
	$(BIN)/python -m pytest -q -n 2 -m "not serial" tests; a=$$?; \
	$(BIN)/python -m pytest -q -m serial tests; b=$$?; \
	test $$a -eq 0 -a $$b -eq 0

# The fast set while iterating: no real browser, nothing slow (under a minute on a quiet machine).
test-fast: setup
	$(BIN)/python -m pytest -q -n 2 -m "not browser and not slow" tests

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/pip install -q -r bench/requirements.txt
	$(BIN)/python bench/bench_scan.py --n 2000 --runs 3
	$(BIN)/python bench/bench_neardup.py recall
	$(BIN)/python bench/bench_neardup.py million --n 1000000 --runs 3
	$(BIN)/python bench/bench_rescan.py --n 100000 --runs 3
	$(BIN)/python bench/bench_label_issues.py --runs 5
	$(BIN)/python bench/bench_knn.py --runs 3
	$(BIN)/python bench/bench_triage.py --n-images 100000 --repeats 5
	$(BIN)/python bench/bench_triage.py --n-images 1000000 --repeats 3

.PHONY: setup app test test-fast lint bench
