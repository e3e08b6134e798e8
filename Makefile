# imagekit: recipes call imagekit and nothing else; `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
IMAGEKIT ?= $(VENV)/bin/imagekit
PYTEST ?= $(VENV)/bin/pytest
ENV ?= test
PYTEST_ARGS ?=
WORKERS ?= 2

.DEFAULT_GOAL := help
IMAGES ?=
.PHONY: help dev-up venv verifiers lock lock-check os build push verify promote test test-unit doctor

help: ## show the targets
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

dev-up: ## install and start the Docker engine, the local registry (127.0.0.1:5000), debootstrap
	PYTHON=$(PYTHON) bash scripts/dev-up.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV)/.installed ## create .venv with imagekit installed

lock: venv ## resolve lockfiles/ from images/*/requirements.in (fast when nothing changed)
	$(IMAGEKIT) lock

lock-check: venv ## exit 1 if lockfiles/ no longer match the requirements.in files
	$(IMAGEKIT) lock --check

os: dev-up venv ## provide the OS image every image builds on (debootstrap where nothing can be pulled)
	$(IMAGEKIT) os

build: dev-up venv ## build every image from the lock, parents first, network off (IMAGES="ray" for some)
	$(IMAGEKIT) build $(IMAGES)

build-%: dev-up venv ## build one image and its parents, e.g. make build-ray
	$(IMAGEKIT) build $*

push: dev-up venv ## push the built images to the registry (the first environment's project)
	$(IMAGEKIT) push

verify: dev-up venv ## verify-compat: notebook-trained models serve identically in the Ray image
	$(IMAGEKIT) verify-compat

promote: venv ## promote the verified images one environment forward: make promote ENV=test
	$(IMAGEKIT) promote --all --to $(ENV)

doctor: venv ## tell what is there and what is missing
	$(IMAGEKIT) doctor

test-unit: venv verifiers ## unit tests only (no Docker)
	$(PYTEST) tests/unit $(PYTEST_ARGS)

VERIFIERS := tests/verifiers
$(VERIFIERS)/node_modules/.installed: $(VERIFIERS)/package-lock.json
	npm ci --prefix $(VERIFIERS) --no-audit --no-fund --loglevel=error
	touch $@

verifiers: $(VERIFIERS)/node_modules/.installed ## the tests' independent verifiers (sigstore-js, from the lockfile)

test: dev-up venv verifiers ## every test: unit and integration (real engine, real registry), on WORKERS processes; the 25 slowest named
	$(PYTEST) -n $(WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)
