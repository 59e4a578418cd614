# f2b-bgp: set-up, tests, demo and benchmarks on a Debian machine, as root.
PYTHON ?= python3
PREFIX ?= /usr/local
VENV ?= /opt/f2b-bgp
APT_PACKAGES := frr bird2 openbgpd gobgpd fail2ban iproute2 nftables systemd
export PIP_BREAK_SYSTEM_PACKAGES := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: deps test unit demo bench faults examples clean install uninstall

## deps: Debian packages (without starting their services) and the Python package with its test extra
deps:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	    created=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created=1; fi; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	    rc=$$?; [ -n "$$created" ] && rm -f /usr/sbin/policy-rc.d; exit $$rc; fi
	@$(PYTHON) -m pip --version >/dev/null 2>&1 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip)
	$(PYTHON) -m pip install -q -e '.[test]'

## test: install what the tests need, then run every test (unit and live)
test: deps
	$(PYTHON) -m pytest -q -ra

## unit: only the tests that start no daemon
unit:
	$(PYTHON) -m pytest -q tests/unit

## demo: the main job end to end in throw-away namespaces
demo: deps
	$(PYTHON) -m tests.demo

## bench: every script in bench/ at sizes that keep it under about 5 minutes on 2 cores, then one table:
## each figure as a ratio against a baseline measured in the same run (min/median/max over repetitions)
## (sizes in bench/run.py; F2B_BENCH_BANS=1000 make bench: fail2ban_actions.py at the size of docs/fail2ban.md's figures)
bench: deps
	$(PYTHON) bench/run.py

## faults: every fault scenario at full size (~5 min): acknowledged / lost / stale / duplicated, time to converge
## (F2B_FAULTS_STORM=10000 F2B_FAULTS_RUNS=3 by default; docs/reliability.md has the figures)
faults: deps
	$(PYTHON) bench/faults.py

## bench-full: the same table at full size: bulk 100,000 bans x 3, bulk through ExaBGP 100,000 x 1, scale at
## 100,000 and 1,000,000 stored bans, kernel routes at 100,000 (about 15 minutes on 2 cores; each script is
## bounded by an hour)
.PHONY: bench-full
bench-full: deps
	$(PYTHON) bench/run.py --full

## examples: regenerate the shipped firewall snippets from the reference config
examples:
	$(PYTHON) -m f2b_bgp.peering.regenerate

## install: as root, idempotent: the daemon in a virtualenv (VENV=/opt/f2b-bgp), f2b-bgp in
## $(PREFIX)/bin (PREFIX=/usr/local), its user, directories, units, config, fail2ban and ExaBGP files;
## DESTDIR=dir stages the files only. VENV_OPTS=--system-site-packages reuses installed packages.
install:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" VENV="$(VENV)" PYTHON="$(PYTHON)" VENV_OPTS="$(VENV_OPTS)" \
	    sh docs/install/install.sh install

## uninstall: remove what install added; keep the config, the state and the user
uninstall:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" VENV="$(VENV)" sh docs/install/install.sh uninstall
