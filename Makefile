# Two entry points for a fresh machine (see README):
#   make app   - set up .venv and open the app on sample_data/
#   make test  - set up .venv and run every test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: requirements.txt tests/requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r tests/requirements.txt
	touch $@

setup: $(BIN)/.installed

app: setup
	$(BIN)/streamlit run app.py -- --root sample_data

test: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/pip install -q -r bench/requirements.txt
	$(BIN)/python bench/run_all.py

.PHONY: setup app test bench
