# maomao: `make run` sets up and starts maomao on the embedded store;
# `make test` sets up and runs the whole test suite (lint, types, tests).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests need: a real etcd server and its client, podman (Docker
# Engine API) with runc, busybox-static for locally built test images, systemd (journald),
# openssl (the certificates of the TLS tests)
DEBS   := etcd-server etcd-client podman runc busybox-static systemd openssl

.PHONY: run test deps venv lint typecheck pytest bench clean zipapp deb

# the daemon on the embedded store (no etcd); its state under ~/.local/state/maomao
# unless a config.ini (./, ~/.config/maomao/, /etc/maomao/) or MAOMAO_CONFIG says otherwise
run: venv
	$(BIN)/maomao --version
	exec $(BIN)/maomao daemon

test: deps venv lint typecheck pytest

deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "maomao needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q maomao

lint:
	$(BIN)/ruff check maomao tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q

bench: venv deps
	$(BIN)/python bench/ctl_latency.py
	$(BIN)/python bench/run_overhead.py
	$(BIN)/python bench/nab.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# the zipapp (shiv; settings in shiv.toml): runs with only python3, `dist/maomao --version`
ZIPAPP ?= dist/maomao
zipapp: venv
	$(BIN)/python packaging/build_zipapp.py -o $(ZIPAPP)

# the Debian package dist/maomao_VERSION_ARCH.deb: the zipapp as /usr/bin/maomao, the unit, the config
DEBDIR ?= dist
deb: zipapp
	$(BIN)/python packaging/build_deb.py --zipapp $(ZIPAPP) --output-dir $(DEBDIR)
