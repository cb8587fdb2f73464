# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv
# when it is missing; a second run finds the stamp and installs nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rssnn-installed

.PHONY: env demo test test-slow test-all bench clean-env

env: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml setup.py rssnn_deploy/sim/fused/cuba.c rssnn_deploy/sim/fused/cuba.h rssnn_deploy/sim/fused/piece.c rssnn_deploy/models/lif.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import rssnn_deploy, lava.lib.dl.netx, lava.lib.dl.slayer; print('environment ready')"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rssnn-deploy demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	$(PY) benchmarks/bench_simulator.py

clean-env:
	rm -rf $(VENV)
