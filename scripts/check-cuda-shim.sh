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
# nvvm, crt, runtime, cccl), installed once into one folder of $CLM_CACHE,
# which then holds a working toolkit; it also gives the C++ side the crt/
# headers the PyTorch wheel lacks.
#
# The tests then run on the CPU with the CUDA shim loaded: a CUDA build must
# work (and report cuda_build=1 and the NCCL backend) where no GPU exists.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${CLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clm}
py=.clm/venv/bin/python
log() { printf 'check-cuda-shim: %s\n' "$*" >&2; }

[ -x "$py" ] || { log "no virtualenv (.clm/venv): run make setup first"; exit 1; }
prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cuda=$("$py" -c 'import torch; print(torch.version.cuda or "")')
[ -n "$cuda" ] || { log "the virtualenv's PyTorch is not a CUDA build: nothing to check"; exit 1; }

# The runtime's exact version: the toolkit wheels (nvcc, crt, ...) must match it.
rt=$("$py" - <<'EOF'
import importlib.metadata as m
for name in ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12"):
    try:
        print(m.version(name)); break
    except m.PackageNotFoundError:
        pass
EOF
)
[ -n "$rt" ] || { log "no nvidia-cuda-runtime package beside torch (CUDA $cuda)"; exit 1; }
case "$cuda" in
  13.*) ;;
  *) log "CUDA $cuda: the toolkit wheels installed here are CUDA 13's (nvidia-cuda-nvcc, nvidia-nvvm, ...)"; exit 1 ;;
esac
# cccl (libcu++, which cuda_fp16.h includes): the version beside torch.
cccl=$("$py" -c 'import importlib.metadata as m; print(m.version("nvidia-cuda-cccl"))' 2>/dev/null || true)
tk="$cache/cuda-toolkit-$rt"
if [ ! -f "$tk/.complete" ]; then
  log "fetching CUDA $rt's nvcc, nvvm, crt, runtime and cccl wheels into $tk (about 300 MB, once)"
  rm -rf "$tk"
  "$py" -m pip install --quiet --no-deps --target "$tk" "nvidia-cuda-nvcc==$rt" "nvidia-nvvm==$rt" \
    "nvidia-cuda-crt==$rt" "nvidia-cuda-runtime==$rt" "nvidia-cuda-cccl${cccl:+==$cccl}"
  touch "$tk/.complete"
fi
nvcc=$(find "$tk" -path '*/bin/nvcc' -type f | head -1)
[ -x "$nvcc" ] || { log "no bin/nvcc in $tk"; exit 1; }
tkinc=$(cd "$(dirname "$nvcc")/../include" && pwd)
[ -f "$tkinc/crt/host_config.h" ] || { log "no include/crt/host_config.h in $tk"; exit 1; }

start=$(date +%s)
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCLM_DIRECT_LINK=ON -DCLM_CUDA_INCLUDE_DIRS="$tkinc" -DCLM_NVCC="$nvcc" >build-cuda.cmake.log 2>&1 || {
  cat build-cuda.cmake.log >&2; log "cmake configure failed"; exit 1; }
grep -q 'building the CUDA shim' build-cuda.cmake.log || {
  cat build-cuda.cmake.log >&2; log "configured a CPU shim, not the CUDA shim"; exit 1; }
grep -q 'clm: CUDA kernels:' build-cuda.cmake.log || {
  cat build-cuda.cmake.log >&2; log "configured without the CUDA kernels (nvcc $nvcc)"; exit 1; }
cmake --build build-cuda -j "$(nproc)" >build-cuda.make.log 2>&1 || {
  tail -50 build-cuda.make.log >&2; log "CUDA shim build failed"; exit 1; }
rm -f build-cuda.cmake.log build-cuda.make.log
log "built build-cuda/libclmtorch.so (CUDA $cuda, CLM_WITH_CUDA, NCCL, the kernels of $(ls torch/csrc/*.cu | wc -l) .cu files) in $(( $(date +%s) - start ))s; testing it on the CPU"

# The test binary's runpath names build/; LD_LIBRARY_PATH takes precedence.
LD_LIBRARY_PATH="$PWD/build-cuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" CLM_EXPECT_SHIM=cuda \
  go test -count=1 ./torch
