# The front door. Every target works on a fresh Debian 12 machine as root:
# `host` installs and starts what the targets need (Docker engine included).
PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest
IMAGE   ?= mailwright:latest

.PHONY: host venv image verify-repro up down test test-unit bench clean

host:
	scripts/host-setup.sh

# Re-runs when the packaging changes: the runtime, plus the `test` extra (pytest & co.).
venv: .venv/.installed
.venv/.installed: pyproject.toml setup.py
	python3 -m venv .venv
	.venv/bin/pip install -q -e '.[test]'
	touch $@

image: host venv
	$(PY) build/image.py --tag $(IMAGE)

verify-repro: host venv
	$(PY) build/image.py --verify-repro

up: image
	$(PY) scripts/demo.py up

down: venv
	$(PY) scripts/demo.py down

# The unit lane starts no container (tests/conftest.py refuses docker tests here).
test-unit: venv
	$(PYTEST) -q tests/unit tests/plan

# CI (.ci/run) runs exactly this: the reproducibility check, then every test.
test: host venv
	$(PY) build/image.py --verify-repro
	$(PYTEST) -q tests

bench: image
	$(PY) bench/run.py

clean:
	rm -rf .venv out
