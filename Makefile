# clm — see README.md. Every target sets itself up on first use.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED := 1
# Reference tests fail (instead of skipping) when the reference Python is
# missing, unless the user chose their own libtorch with LIBTORCH.
export CLM_REQUIRE_REFERENCE ?= $(if $(LIBTORCH),0,1)
TEST_TIMEOUT ?= 25m

SHIM := build/libclmtorch.so

.PHONY: all setup build test vet bench bench-torch bench-model device-bins clean

all: build

# Idempotent: a cached virtualenv and an up-to-date shim make this a no-op.
setup:
	@scripts/setup.sh

$(SHIM): CMakeLists.txt torch/csrc/*.cpp torch/csrc/*.h
	@scripts/setup.sh

build: $(SHIM)
	@mkdir -p bin
	$(GO) build -o bin/clm ./cmd/clm
	@echo "built bin/clm"

vet: $(SHIM)
	$(GO) vet ./...

test: $(SHIM) vet
	@set -o pipefail; $(GO) test -json -timeout $(TEST_TIMEOUT) ./... | $(GO) run ./internal/testsum

# Benchmarks against PyTorch eager on the same libtorch and threads; see
# README "Benchmarks".
bench-torch: $(SHIM)
	scripts/bench-compare.sh ./torch/ 'OpDispatch$$|MLPStep' scripts/reference/bench_torch.py

bench-model: $(SHIM)
	scripts/bench-compare.sh ./model/ 'ForwardBackward' scripts/reference/bench_model.py

bench: bench-torch bench-model

# Test binaries for scripts/device-check.sh on a GPU machine without Go.
DEVICE_PKGS ?= torch
device-bins: $(SHIM)
	@mkdir -p bin/device
	@for p in $(DEVICE_PKGS); do $(GO) test -c -o bin/device/$$p.test ./$$p || exit 1; done
	@ls bin/device

clean:
	rm -rf build bin
