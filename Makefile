# The verbs a user of pad needs. Run them inside the project's virtual environment.
#   make install   editable install with the test tools
#   make compile   write the KFP package pad.yaml (PLACEMENT= another placement file)
#   make build     build the images, push them (REGISTRY=...) or load them into kind (KIND=pad), record their tags
#   make run       the whole pipeline locally with kfp.local (ARGS="--source files:/data/shop")
#   make test      the test suite, then the llm2vec and the serving tests in their own environments
#   make test-containers   build the cpu image on podman and run the pipeline in it (root, Debian)
PYTHON ?= python
PLACEMENT ?= pipelines/placement.yaml
REGISTRY ?= pad.local
KIND ?=
ARGS ?=

.PHONY: install compile build run test test-containers

install:
	$(PYTHON) -m pip install -e ".[dev]"

compile:
	$(PYTHON) -m pad pipeline compile --config $(PLACEMENT) --out pad.yaml

build:
	$(PYTHON) docker/build.py --registry $(REGISTRY) --placement $(PLACEMENT) $(if $(KIND),--kind-load $(KIND))

run:
	$(PYTHON) -m pad run $(ARGS)

test:
	$(PYTHON) -m pytest -q
	bash tests/llm2vec/run.sh
	bash tests/serve/run.sh

test-containers:
	bash tests/containers/run.sh
