# The Lambda image and `sam local`, run as deployed (docs/deploy.md#building-and-running-the-image-here).
# Everything here talks to the project's own Docker daemon (mk/dockerd.sh: its own data root,
# socket and bridge; containers reach only this machine), never to a Docker the user has.
#
#   make image [MODEL=DIR] [MODEL_ID=openai/clip-vit-base-patch32]   build infra/Dockerfile
#   make sam-local [PORT=3000] BUCKET=B [S3_ENDPOINT=URL] [API_KEYS=k]  sam build + start-api
#   make test-container                                               tests/container/
#   make docker-stop                                                  stop the daemon
#
# LAMBDA_BASE=stand-in (default) builds FROM a stand-in for AWS's base image made here
# (mk/lambda_base.sh: Debian 12, Python 3.11) and installs wheels this machine's pip downloads,
# served on the bridge (mk/wheelhouse.py), because no registry is reachable from the containers.
# LAMBDA_BASE=aws pulls public.ecr.aws/lambda/python:3.12 and lets the build reach PyPI and the
# torch index itself (a machine with the internet).
LAMBDA_BASE ?= stand-in
IMAGE ?= image-search:latest
MODEL ?=
MODEL_ID ?= openai/clip-vit-base-patch32
# More `docker build` options, e.g. --no-cache to time a build from nothing.
DOCKER_BUILD_FLAGS ?=
PORT ?= 3000
BUCKET ?=
S3_ENDPOINT ?=
API_KEYS ?=
WHEELHOUSE ?= /var/cache/image-search/wheelhouse
# Fixed, so the build arguments (and so Docker's layer cache) are the same from run to run.
WHEELHOUSE_PORT ?= 38917
DOCKERD := mk/dockerd.sh
DOCKER_ENV = $(shell $(DOCKERD) env | sed 's/^export //') DOCKER_BUILDKIT=0
BRIDGE_IP = $(shell $(DOCKERD) address)
SAM_LOCAL_DIR := .aws-sam/local
# mk/infra.mk's stamp for .venv-sam, named here because that file is read after this one.
SAM_TOOLS := .venv-sam/.installed

.PHONY: docker-daemon docker-stop lambda-base wheelhouse model-dir image sam-local test-container \
	bench-image

docker-daemon:
	$(DOCKERD) start

docker-stop:
	$(DOCKERD) stop

lambda-base: docker-daemon $(STAMP) $(SAM_TOOLS)
ifeq ($(LAMBDA_BASE),stand-in)
	mk/lambda_base.sh
else
	env $(DOCKER_ENV) docker pull public.ecr.aws/lambda/python:3.12
endif

$(WHEELHOUSE)/.fetched: requirements.txt requirements-lambda.txt $(STAMP)
	$(BIN)/python mk/wheelhouse.py fetch $(WHEELHOUSE) -r requirements.txt
	touch $@

wheelhouse: $(if $(filter stand-in,$(LAMBDA_BASE)),$(WHEELHOUSE)/.fetched)

# infra/model/ holds MODEL (a checkpoint or an ONNX export) or, without MODEL, nothing: the hub.
model-dir:
	find infra/model -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	$(if $(MODEL),cp -R "$(MODEL)"/. infra/model/)
	@echo "infra/model/: $(or $(MODEL),empty, so the build downloads $(MODEL_ID) from the hub)"

# The build, with the wheelhouse served for as long as it runs where the stand-in needs it.
WITH_WHEELS = $(if $(filter stand-in,$(LAMBDA_BASE)),$(BIN)/python mk/wheelhouse.py serve \
	--host $(BRIDGE_IP) --port $(WHEELHOUSE_PORT) $(WHEELHOUSE) --)
WHEEL_URL = http://$(BRIDGE_IP):$(WHEELHOUSE_PORT)/simple/
WHEEL_ARGS = $(if $(filter stand-in,$(LAMBDA_BASE)),PIP_INDEX_URL=$(WHEEL_URL) \
	TORCH_INDEX_URL=$(WHEEL_URL) PIP_TRUSTED_HOST=$(BRIDGE_IP))

## image: build infra/Dockerfile on the project's daemon (MODEL=DIR: a local model) and print its size
image: lambda-base wheelhouse model-dir
	$(WITH_WHEELS) env $(DOCKER_ENV) docker build --file infra/Dockerfile --tag $(IMAGE) \
	    $(DOCKER_BUILD_FLAGS) --build-arg MODEL_ID=$(MODEL_ID) \
	    $(addprefix --build-arg ,$(WHEEL_ARGS)) .
	@env $(DOCKER_ENV) $(BIN)/python mk/image_size.py $(IMAGE)

## sam-local: sam build, then sam local start-api on PORT against BUCKET (and S3_ENDPOINT)
sam-local: lambda-base wheelhouse $(SAM_TOOLS)
	@test -n "$(BUCKET)" || { echo "make sam-local needs BUCKET=<bucket>"; exit 2; }
	$(if $(MODEL),$(MAKE) --no-print-directory model-dir MODEL="$(MODEL)")
	mkdir -p $(SAM_LOCAL_DIR)
	$(SAM_VENV)/bin/python infra/local_template.py template template.yaml \
	    $(SAM_LOCAL_DIR)/template.json $(addprefix --build-arg ,$(WHEEL_ARGS))
	$(SAM_VENV)/bin/python infra/local_template.py env-vars $(SAM_LOCAL_DIR)/env.json \
	    --bucket "$(BUCKET)" --s3-endpoint "$(S3_ENDPOINT)" --api-keys "$(API_KEYS)"
	$(WITH_WHEELS) env $(DOCKER_ENV) SAM_CLI_TELEMETRY=0 $(SAM) build SearchFunction \
	    --template $(SAM_LOCAL_DIR)/template.json --base-dir . --build-dir $(SAM_LOCAL_DIR)/build
	env $(DOCKER_ENV) SAM_CLI_TELEMETRY=0 $(SAM) local start-api \
	    --template $(SAM_LOCAL_DIR)/build/template.yaml --port $(PORT) \
	    --env-vars $(SAM_LOCAL_DIR)/env.json --warm-containers LAZY

## test-container: build the image with the tiny model, run each function under the emulator
## and through `sam local start-api` (tests/container/). The tests start the daemon (and stop it
## if they did), build through `make image` and stop every container they start.
test-container: $(STAMP) $(SAM_TOOLS)
	$(BIN)/python -m pytest tests/container -m container -q

## bench-image: the image's cold start (docker run -> first text answer under the emulator) beside
## the process's, at 100k images (bench/imagecold.py; build IMAGE with `make image` first)
bench-image: docker-daemon $(STAMP)
	$(BIN)/python -m bench.imagecold --image $(IMAGE) $(BENCH_IMAGE_ARGS)
