# edgevit: every target installs what is missing first, so `make demo` and `make test`
# work on a fresh Debian machine (as root, or with sudo) with only the package registries.

VENV     ?= .venv
PY       := $(VENV)/bin/python
EDGEVIT  := $(VENV)/bin/edgevit
APT_PKGS := dataset-fashion-mnist gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm \
            gcc-aarch64-linux-gnu qemu-user openssh-server openssh-client chromium
STAMP    := $(VENV)/.edgevit-installed
PYTEST   ?= -q

.PHONY: setup system demo test test-all models clean help

help:
	@echo "make demo      set up, compile fmnist-tiny (int8) for stm32f746-disco, run it on QEMU"
	@echo "make test      set up, then run the test suite (slow end-to-end tests excluded)"
	@echo "make test-all  the whole suite, slow tests included"
	@echo "make models    retrain the model zoo (about an hour on 2 cores)"

# Debian packages: install only the missing ones (apt-get needs root; sudo is used if present).
system:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The venv: CPU torch first (a local wheel; any other spec pulls GBs of CUDA), then edgevit.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray,boards,fpga]'
	@touch $@

setup: system $(STAMP)

# The main job on the bundled default: int8 fmnist-tiny for the STM32F746 board, run on its
# QEMU stand-in (Cortex-M7, mps2-an500), outputs checked bit-exactly against the reference.
DEMO_OUT ?= build/demo
demo: setup
	$(EDGEVIT) compile models/fmnist-tiny --profile stm32f746-disco --passes "quant(w=8,a=8)" \
	  --out $(DEMO_OUT) --force
	$(EDGEVIT) run $(DEMO_OUT) --runner qemu --count 20

test: setup
	$(PY) -m pytest $(PYTEST)

test-all: setup
	$(PY) -m pytest $(PYTEST) -m "slow or not slow"

models: setup
	$(EDGEVIT) train --spec models/fmnist-tiny/spec.yaml --data fashion-mnist --epochs 15 --out runs/fmnist-tiny-1
	$(EDGEVIT) train --spec models/fmnist-tiny/spec.yaml --init runs/fmnist-tiny-1 --data fashion-mnist --epochs 10 \
	  --lr 5e-4 --shift 1 --no-flip --warmup-epochs 0.2 --label-smoothing 0.05 --out runs/fmnist-tiny
	$(EDGEVIT) train --spec models/fmnist-small/spec.yaml --data fashion-mnist --epochs 14 --lr 2e-3 --shift 1 \
	  --label-smoothing 0.05 --warmup-epochs 0.5 --out runs/fmnist-small-1
	$(EDGEVIT) train --spec models/fmnist-small/spec.yaml --init runs/fmnist-small-1 --data fashion-mnist --epochs 10 \
	  --lr 5e-4 --shift 1 --no-flip --warmup-epochs 0.2 --label-smoothing 0.05 --out runs/fmnist-small
	@echo "runs/ holds the new checkpoints; copy spec.yaml + model.safetensors into models/<name>/ to replace the zoo"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info runs
