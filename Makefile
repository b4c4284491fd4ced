# One entry point for people and CI. `make test` and `make demo` set everything up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-all lint format demo serve bench bench-quick clean

$(STAMP): requirements.txt requirements-lambda.txt requirements-dev.txt requirements-ray.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## test: the default test run (everything but tests marked slow, and the container tests:
## `make test-container`, mk/docker.mk)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not container" -q

## test-all: every test, the slow ones included (the container tests: `make test-container`)
test-all: $(STAMP)
	$(BIN)/python -m pytest -m "not container" -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy image_search handler.py bench

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## demo: run the product on an embedded S3 with sample photos (extra options: ARGS="--model /path")
demo: $(STAMP)
	$(BIN)/python -m image_search demo $(ARGS)

serve: $(STAMP)
	$(BIN)/python -m image_search serve

## bench: the full benchmark run; bench-quick: the same at small sizes, checking the targets
bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Area-specific targets (infrastructure checks, ...) live in mk/*.mk.
-include $(wildcard mk/*.mk)

clean:
	rm -rf $(VENV) .venv-export .pytest_cache .ruff_cache .mypy_cache test-artifacts
