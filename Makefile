# Parley: `make run` sets everything up and starts the site with a worker; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_DIR ?= var/models/tiny

.PHONY: run setup test lint format vendor clean

run: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py make_tiny_model $(MODEL_DIR) --project demo --keep-chosen
	PYTHON=$(BIN)/python scripts/run_dev.sh

setup: $(VENV)/.installed

# Reinstall only when the dependency list changes. torch goes first and pinned, so the CPU wheel
# is used where one is available; the project's own range (torch>=2.4) accepts it.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,train]"
	touch $@

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

vendor:
	scripts/vendor_static.sh

clean:
	rm -rf $(VENV) var staticfiles
