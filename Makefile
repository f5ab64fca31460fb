# multitask-operator. `make demo` and `make test` work on a fresh machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch first and pinned: a loose requirement would pull a multi-GB CUDA build (a CPU wheel is
# what this pin resolves to on the machines we develop and test on).
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= operator,trainer,gateway,storage,report,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install demo demo-tiny test test-fast crds tools lint clean trainer-image operator-image

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Test tools that are not Python packages (helm, kubectl, lua5.1): see scripts/install-tools.sh.
tools:
	@bash scripts/install-tools.sh

demo: install
	@bash scripts/demo.sh

demo-tiny: install
	@bash scripts/demo.sh --tiny

MYPY := $(VENV)/bin/mypy -p multitask_operator -p multitask_gateway -p multitask_devserver \
	-p multitask_trainer

test: install tools
	$(VENV)/bin/ruff check operator trainer-image tests benchmarks examples
	$(MYPY)
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not integration"

crds: install
	$(VENV)/bin/mtm crd > crds/multitaskmodels.yaml
	@for d in charts/*/crds; do [ -d "$$d" ] && cp crds/*.yaml "$$d/"; done; true

lint: install
	$(VENV)/bin/ruff check operator trainer-image tests benchmarks examples
	$(VENV)/bin/lint-imports
	$(MYPY)

trainer-image:
	@command -v docker >/dev/null || { echo "make trainer-image needs Docker; none here"; exit 1; }
	docker build -f trainer-image/Dockerfile -t multitask-trainer:dev .

operator-image:
	@command -v docker >/dev/null || { echo "make operator-image needs Docker; none here"; exit 1; }
	docker build -f operator/Dockerfile -t ghcr.io/multitask-operator/operator:0.1.0 .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
