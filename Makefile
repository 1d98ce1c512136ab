# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test install install-dev lint typecheck services sysdeps npm-deps bench evals clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) -e '.[local,memory]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) -e '.[dev,local,anthropic]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The demo's calculation runs in the bubblewrap sandbox; without root to install it, that one task
# answers with the sandbox's own error naming the fix, and the others run.
demo: install
	@$(MAKE) --no-print-directory sysdeps APT_PACKAGES="$(SANDBOX_APT)" || echo "note: could not install $(SANDBOX_APT) (needs root); the demo's run_python task will say so"
	$(VENV)/bin/keel demo

lint: install-dev
	$(PY) -m ruff check src tests examples bench

typecheck: install-dev
	$(PY) -m mypy

# PostgreSQL on 127.0.0.1:5432 (database `test`) serves the durable tests, Redis on 127.0.0.1:6379 the
# shared rate limits; start them if they are down.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@pg_isready -h 127.0.0.1 -p 5432
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --bind 127.0.0.1 --port 6379 --daemonize yes

# Debian packages the tests need (the machine runs as root; CI starts from the same image).
# bubblewrap and python3-seccomp: the default code sandbox (keel.sandbox).
SANDBOX_APT := bubblewrap python3-seccomp
APT_PACKAGES := $(SANDBOX_APT)
# redis-server: rate limits shared through Redis (keel.policies.ratelimit).
APT_PACKAGES += redis-server
# chromium: the web console's browser tests (Playwright drives Debian's build).
APT_PACKAGES += chromium
# curl: a client inside the sandbox that resolves names through the egress proxy (tests/sandbox).
APT_PACKAGES += curl

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi


# npm packages the tests need, pinned, installed into tests/.npm (not committed): the reference MCP server.
NPM_PACKAGES := @modelcontextprotocol/server-everything@2026.8.31
NPM_DIR := tests/.npm

$(NPM_DIR)/.installed: Makefile
	mkdir -p $(NPM_DIR)
	npm install --prefix $(NPM_DIR) --no-audit --no-fund --save-exact --loglevel=error $(NPM_PACKAGES)
	touch $@

npm-deps: $(NPM_DIR)/.installed

test: install-dev lint typecheck sysdeps services npm-deps
	KEEL_STRICT_SKIPS=1 $(PY) -m pytest -q

bench: install-dev
	$(PY) bench/overhead.py

# The support agent's eval set on the scripted model (seconds); the gate fails on a regression.
evals: install-dev
	$(VENV)/bin/keel eval examples/support/evals.yaml --trials 3 --db memory

clean:
	rm -rf $(VENV) .keel .mypy_cache .ruff_cache .pytest_cache
