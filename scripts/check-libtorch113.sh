#!/usr/bin/env bash
# Builds the shim against Debian's libtorch-dev (1.13, CPU) and runs the
# torch package's own tests against it (the reference-parity tests need the
# PyTorch 2.x virtualenv and are left to `make test`). Installs libtorch-dev
# with apt-get when missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake ] && [ ! -f /usr/lib/aarch64-linux-gnu/cmake/Torch/TorchConfig.cmake ]; then
  apt-get update -qq && apt-get install -y -qq libtorch-dev >/dev/null
fi
cmake -S . -B build-1.13 -DCMAKE_PREFIX_PATH=/usr >/dev/null
cmake --build build-1.13 -j "$(nproc)" >/dev/null
# The test binary links libclmtorch by name; the 1.13 build is found first.
LD_LIBRARY_PATH="$PWD/build-1.13" go test -count=1 -run 'Capab|Errors|Leak|Scope|NoGrad|RoundTrip|Autocast|AdamWForeach|LinearCrossEntropy|CPUCache' -v ./torch/ |
  grep -E '^(--- |ok|FAIL)|torch='
