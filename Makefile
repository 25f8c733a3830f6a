# Kyso — two commands on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make run    set everything up and serve http://127.0.0.1:8000
#   make test   set everything up and run the linters and the whole test suite
# Every target is idempotent and safe to re-run.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KYSO_DATA_DIR ?= $(CURDIR)/var
export KYSO_DATA_DIR
export KYSO_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres

# Debian packages: what the service needs, and what the tests use as independent checkers.
RUN_PACKAGES := softhsm2
TEST_PACKAGES := softhsm2 openssl qpdf poppler-utils libnss3-tools

.PHONY: help run test bench setup venv system-packages token database postgres lint clean

help:
	@echo "make run    set up (venv, SoftHSM2, token, database, demo PKI) and serve on http://127.0.0.1:8000"
	@echo "make test   set up, then ruff, mypy, import-linter and pytest (SQLite and PostgreSQL)"
	@echo "make bench  benchmarks: HSM signing, audit log, OCSP and TSA, PAdES signing against pyHanko, large documents, HTTP latency, verification against pyHanko"

run: setup
	$(BIN)/kyso serve

test: APT_PACKAGES = $(TEST_PACKAGES)
test: setup postgres lint
	$(BIN)/pytest

bench: setup postgres
	$(BIN)/python -m bench.hsm_bench
	$(BIN)/python -m bench.audit_bench
	$(BIN)/python -m bench.pki_bench
	$(BIN)/python -m bench.tsa_bench
	$(BIN)/python -m bench.signer_bench
	$(BIN)/python -m bench.size_bench
	$(BIN)/python -m bench.http_bench
	$(BIN)/python -m bench.verifier_bench

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup: venv system-packages token database

APT_PACKAGES ?= $(RUN_PACKAGES)

# apt-get as root or through password-less sudo; otherwise say exactly what is missing.
define apt_install
	missing=""; for p in $(1); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "Kyso needs the Debian package(s):$$missing. Install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	  echo "installing$$missing"; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

system-packages:
	@$(call apt_install,$(APT_PACKAGES))

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Kyso needs Python 3.11 or newer"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  $(call apt_install,python3-venv); rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

token: venv system-packages
	$(BIN)/python softhsm/provision.py --data-dir "$(KYSO_DATA_DIR)"

database: venv token
	$(BIN)/kyso init --demo

# The suite also runs against PostgreSQL: start the local cluster when it is installed
# but down; install one (trust auth on 127.0.0.1 only) when there is none at all.
postgres:
	@if ! command -v pg_lsclusters >/dev/null; then \
	  $(call apt_install,postgresql); fresh=1; else fresh=0; fi; \
	for cluster in $$(pg_lsclusters -h | awk '$$4 != "online" {print $$1 "/" $$2}'); do \
	  pg_ctlcluster --skip-systemctl-redirect $${cluster%/*} $${cluster#*/} start || true; \
	done; \
	if [ "$$fresh" = 1 ]; then \
	  hba=$$(ls /etc/postgresql/*/main/pg_hba.conf | head -1); \
	  sed -i '1i host all postgres 127.0.0.1/32 trust' "$$hba"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main reload; \
	fi; \
	for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; \
	echo "PostgreSQL is not answering on 127.0.0.1:5432 (KYSO_TEST_POSTGRES_URL=$$KYSO_TEST_POSTGRES_URL)" >&2; exit 1

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
