# Mobius: `make up` runs the embedded default, `make test` the whole suite. Both run `make setup`
# first, which installs what is missing and is fast when nothing is.

KUBE_VERSION ?= v1.36.3
ETCD_VERSION ?= v3.6.16
COREDNS_VERSION ?= v1.12.4
PYTHON ?= python3.11
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mobius
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
DEB_PACKAGES := slurm-wlm slurm-client munge podman runc busybox-static uidmap slirp4netns \
	fuse-overlayfs iproute2 iptables procps

export MOBIUS_KUBE_BIN := $(CACHE)/bin

.PHONY: setup up test test-unit lint bench bench-full packages kube venv extensions image clean

setup: packages kube venv extensions image

packages:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "setup: need root to install:$$missing (ask your admin, or run as root)"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || { echo "setup: apt-get install failed for:$$missing; run it by hand to see why"; exit 1; }; \
	fi

kube:
	@tools/build-kube.sh "$(CACHE)" "$(KUBE_VERSION)" "$(ETCD_VERSION)" "$(COREDNS_VERSION)"

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found; install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMPS)/venv: pyproject.toml setup.py | $(PY)
	@mkdir -p $(STAMPS)
	$(PY) -m pip install -q -e '.[test]' || { echo "setup: pip install failed (see above)"; exit 1; }
	@touch $@

venv: $(STAMPS)/venv

$(STAMPS)/extensions: $(STAMPS)/venv $(wildcard mobius/_fast/*.pyx mobius/_fast/*.pxi) setup.py
	$(PY) setup.py -q build_ext --inplace
	@touch $@

extensions: $(STAMPS)/extensions

image:
	@tools/build-image.sh

up: setup
	$(PY) -m mobius up

# The whole suite: lint, unit and end-to-end tests (real API server, Slurm and podman), then the
# unit tests again on the pure-Python twins of the compiled modules.
test: setup
	$(VENV)/bin/ruff check mobius tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	MOBIUS_REQUIRE_EXTENSIONS=1 $(VENV)/bin/pytest
	MOBIUS_NO_EXTENSIONS=1 $(VENV)/bin/pytest -m "not e2e" -q

test-unit: setup
	$(VENV)/bin/pytest -m "not e2e"

lint: venv
	$(VENV)/bin/ruff check mobius tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(VENV)/bin/pytest benchmarks/

bench-full: setup
	$(VENV)/bin/pytest benchmarks/ --full

clean:
	rm -rf $(STAMPS) build mobius/_fast/*.so mobius/_fast/*.c
