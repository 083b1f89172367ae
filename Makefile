# cauditd: the two commands of the README, plus install and benchmarks. Run as root.
PREFIX ?= /opt/cauditd
CONFIG ?= /etc/cauditd/cauditd.toml
VENV := .venv

.PHONY: run test install uninstall bench bench-quick lint

run:
	@scripts/bootstrap.sh
	$(VENV)/bin/cauditd run $(if $(wildcard $(CONFIG)),--config $(CONFIG))

test:
	@scripts/bootstrap.sh --test
	@scripts/test.sh

install:
	@scripts/bootstrap.sh
	@PREFIX=$(PREFIX) scripts/install.sh

bench:
	@scripts/bootstrap.sh --test
	$(VENV)/bin/python bench/run.py

bench-quick:
	@scripts/bootstrap.sh --test
	$(VENV)/bin/python bench/run.py --quick

lint:
	$(VENV)/bin/ruff check daemon tests bench hatch_build.py
	$(VENV)/bin/mypy
