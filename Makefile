# The verbs a user of pad needs. Run them inside the project's virtual environment.
#   make install   editable install with the test tools
#   make build     build the images, push them (REGISTRY=...) or load them into kind (KIND=pad) or minikube
#                  (MINIKUBE=minikube), and record them in pad-images.json
#   make compile   write the KFP package pad.yaml with the recorded images (PLACEMENT=kind|minikube|FILE; default gke)
#   make run       the whole pipeline locally with kfp.local (ARGS="--source files:/data/shop")
#   make test      the test suite, then the llm2vec and the serving tests in their own environments
#   make test-containers   build the cpu image on podman and run the pipeline in it (root, Debian)
PYTHON ?= python
PLACEMENT ?= gke
REGISTRY ?= pad.local
KIND ?=
MINIKUBE ?=
ARGS ?=

.PHONY: install compile build run test test-containers

install:
	$(PYTHON) -m pip install -e ".[dev]"

compile:
	$(PYTHON) -m pad pipeline compile --config $(PLACEMENT) --out pad.yaml

build:
	$(PYTHON) docker/build.py --registry $(REGISTRY) $(if $(KIND),--kind-load $(KIND)) $(if $(MINIKUBE),--minikube-load $(MINIKUBE))

run:
	$(PYTHON) -m pad run $(ARGS)

test:
	$(PYTHON) -m pytest -q
	bash tests/llm2vec/run.sh
	bash tests/serve/run.sh

test-containers:
	bash tests/containers/run.sh
