# pudimd: `make run` starts the daemon on etc/pudimd.yaml, `make test` runs every test.
# Both create .venv and install what they need on a fresh machine.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= etc/pudimd.yaml
STATE  ?= .state
# An operator's install (no test tools): bench/bench_idle.py measures the daemon's memory in it.
RUNTIME_VENV ?= .venv-runtime

# Debian packages the test suite talks to: nginx, promtool (prometheus), dnsmasq, the real
# blackbox_exporter, sshd.
DEBIAN_TEST_PACKAGES ?= nginx prometheus dnsmasq prometheus-blackbox-exporter openssh-server prometheus-alertmanager postgresql-client

.PHONY: run test lint unit bench docs deb-deps clean help

help:
	@echo "make run    create $(VENV), install pudimd, run it on $(CONFIG) (state in $(STATE)/)"
	@echo "make test   install test dependencies (Python and Debian), lint, run the whole suite"
	@echo "make lint   ruff + mypy"
	@echo "make bench  run the benchmarks in bench/ and print their figures"
	@echo "make docs   regenerate docs/configuration.md and docs/probes.md from the plugins"

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

$(RUNTIME_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install --quiet -e .
	@touch $@

run: $(VENV)/.installed
	$(BIN)/pudimd run -c $(CONFIG) --state-dir $(STATE)

deb-deps:
	@missing=""; \
	for pkg in $(DEBIAN_TEST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check pudimd plugins tests bench contrib
	$(BIN)/mypy

unit: $(VENV)/.installed-test
	$(BIN)/pytest tests/unit

test: $(VENV)/.installed-test deb-deps lint
	$(BIN)/pytest

bench: $(VENV)/.installed-test $(RUNTIME_VENV)/.installed
	@$(MAKE) --no-print-directory deb-deps DEBIAN_TEST_PACKAGES="$(DEBIAN_TEST_PACKAGES) wrk"
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
	@echo "== bench/bench_throughput.py --keepalive"; $(BIN)/python bench/bench_throughput.py --keepalive --scale 0

docs: $(VENV)/.installed
	$(BIN)/pudimd config schema --markdown > docs/configuration.md
	$(BIN)/pudimd config probes > docs/probes.md

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) $(STATE) .mypy_cache .ruff_cache .pytest_cache
