# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test install install-dev lint typecheck services sysdeps bench evals clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) -e '.[local]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) -e '.[dev,local,anthropic]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/keel demo

lint: install-dev
	$(PY) -m ruff check src tests examples bench

typecheck: install-dev
	$(PY) -m mypy

# PostgreSQL on 127.0.0.1:5432 (database `test`) serves the durable tests; start it if it is down.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@pg_isready -h 127.0.0.1 -p 5432

# Debian packages the tests need (the machine runs as root; CI starts from the same image).
APT_PACKAGES :=

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: install-dev lint typecheck services sysdeps
	$(PY) -m pytest -q

bench: install-dev
	$(PY) bench/overhead.py

# The support agent's eval set on the scripted model (seconds); the gate fails on a regression.
evals: install-dev
	$(VENV)/bin/keel eval examples/support/evals.yaml --trials 3 --db memory

clean:
	rm -rf $(VENV) .keel .mypy_cache .ruff_cache .pytest_cache
