# The export environment for open_clip models (requirements-export.txt): a venv of its own, since
# PyPI's torchvision beside the CPU torch would change transformers' image processors in the main
# one. `make test` skips the tests that need open_clip (marked open_clip); `make test-open-clip`
# runs them here, and .ci/run runs both.
EXPORT_VENV := .venv-export
EXPORT_STAMP := $(EXPORT_VENV)/.installed

.PHONY: export-venv test-open-clip

$(EXPORT_STAMP): requirements-export.txt requirements.txt requirements-lambda.txt requirements-dev.txt requirements-ray.txt
	test -x $(EXPORT_VENV)/bin/python || $(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet --upgrade pip
	$(EXPORT_VENV)/bin/pip install --quiet -r requirements-export.txt
	touch $(EXPORT_STAMP)

## export-venv: the environment `python -m image_search export --model open_clip:ARCH` runs in
export-venv: $(EXPORT_STAMP)

## test-open-clip: the open_clip tests (export, tokenizer, transform, serving), slow ones aside
test-open-clip: $(EXPORT_STAMP)
	$(EXPORT_VENV)/bin/python -m pytest -m "open_clip and not slow" -q

# The benchmark's MobileCLIP2-S0 row is exported in the export environment (bench/fixtures/families.py).
bench bench-quick: $(EXPORT_STAMP)
