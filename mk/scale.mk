# The scale benchmark (docs/scale.md): publish N synthetic images to a file-backed S3, then time a
# fresh process's cold start through the service, its memory, latency and recall. 10M needs
# ~45 GB of scratch disk (SCALE_WORK, default a temporary folder) and most of a 24 GB machine for
# about an hour; it is not run by CI.
.PHONY: bench-scale-1m bench-scale-10m

SCALE_WORK ?=
SCALE_FLAGS = $(if $(SCALE_WORK),--work "$(SCALE_WORK)")

## bench-scale-1m / bench-scale-10m: the scale benchmark at 1M / 10M images (JSON in bench/results/)
bench-scale-1m: $(STAMP)
	mkdir -p bench/results
	$(BIN)/python -m bench scale --count 1000000 $(SCALE_FLAGS) --json bench/results/scale-1m.json

bench-scale-10m: $(STAMP)
	mkdir -p bench/results
	$(BIN)/python -m bench scale --count 10000000 $(SCALE_FLAGS) --json bench/results/scale-10m.json
