# Two commands do everything: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: demo test lint typecheck bench chromium clean

$(VENV)/.base: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.base
	$(BIN)/telematics demo $(ARGS)

test: $(VENV)/.test chromium lint typecheck
	$(BIN)/pytest $(ARGS)

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test
	$(BIN)/mypy

chromium:  # the dashboard tests need Debian's Chromium; installed when missing
	.ci/ensure-chromium

bench: $(VENV)/.test
	$(BIN)/python benchmarks/ingest.py $(ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
