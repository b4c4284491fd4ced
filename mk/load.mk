# The load test (README: Hardening): 32 clients for 60 s against uvicorn on 127.0.0.1, mixing
# text searches, image uploads and folder listings. The tiny random CLIP unless MODEL is given;
# more options through LOAD_ARGS (e.g. LOAD_ARGS="--seconds 120 --json load.json").
.PHONY: load

## load: mixed-request load test on loopback; fails on any error or on memory growth over 10 %
load: $(STAMP)
	$(BIN)/python bench/load.py $(if $(MODEL),--model "$(MODEL)") $(LOAD_ARGS)
