#!/usr/bin/env bash
# make check-cuda-shim: compile the CUDA shim on a machine without a GPU, and
# run the binding's tests against it.
#
# The CUDA code paths of torch/csrc (CUDA memory statistics, NCCL process
# groups, ...) are compiled only with -DCLM_WITH_CUDA, which a workstation's
# `make setup` never does. This script builds them into build-cuda/ against the
# virtualenv's CUDA-built PyTorch wheel, linked directly (-DCLM_DIRECT_LINK=ON:
# no nvcc needed), so that a shim change that breaks the CUDA build fails here
# rather than on the GPU machine. The CUDA kernels (torch/csrc/*.cu) are
# compiled too, by nvcc from CUDA's own wheels of the runtime's version (nvcc,
# nvvm, crt, runtime, cccl), installed once into one folder of $CLM_CACHE by
# scripts/cuda-toolkit.sh, which then holds a working toolkit; it also gives
# the C++ side the crt/ headers the PyTorch wheel lacks.
#
# The tests then run on the CPU with the CUDA shim loaded: a CUDA build must
# work (and report cuda_build=1 and the NCCL backend) where no GPU exists.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.clm/venv/bin/python
log() { printf 'check-cuda-shim: %s\n' "$*" >&2; }

[ -x "$py" ] || { log "no virtualenv (.clm/venv): run make setup first"; exit 1; }
prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cuda=$("$py" -c 'import torch; print(torch.version.cuda or "")')
[ -n "$cuda" ] || { log "the virtualenv's PyTorch is not a CUDA build: nothing to check"; exit 1; }

PYTHON=$py scripts/build-shim.sh cuda "$prefix" build-cuda
log "built build-cuda/libclmtorch.so (CUDA $cuda, CLM_WITH_CUDA, NCCL, the kernels of $(ls torch/csrc/*.cu | wc -l) .cu files); testing it on the CPU"

# The test binary's runpath names build/; LD_LIBRARY_PATH takes precedence.
LD_LIBRARY_PATH="$PWD/build-cuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" CLM_EXPECT_SHIM=cuda \
  go test -count=1 ./torch
