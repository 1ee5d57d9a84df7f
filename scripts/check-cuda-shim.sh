#!/usr/bin/env bash
# make check-cuda-shim: compile the CUDA shim on a machine without a GPU, and
# run the binding's tests against it.
#
# The CUDA code paths of torch/csrc (CUDA memory statistics, NCCL process
# groups, ...) are compiled only with -DCLM_WITH_CUDA, which a workstation's
# `make setup` never does. This script builds them into build-cuda/ against the
# virtualenv's CUDA-built PyTorch wheel, linked directly (-DCLM_DIRECT_LINK=ON:
# no nvcc needed), so that a shim change that breaks the CUDA build fails here
# rather than on the GPU machine. The wheel ships CUDA's runtime headers but not
# crt/host_config.h, which they include: that comes from the nvidia-cuda-crt
# wheel of the same CUDA version, installed into $CLM_CACHE.
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

# The runtime headers' exact version: crt must match them.
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
crt="$cache/cuda-crt-$rt"
if [ ! -f "$crt/.complete" ]; then
  log "fetching nvidia-cuda-crt==$rt (CUDA's crt/ headers, once)"
  rm -rf "$crt"
  "$py" -m pip install --quiet --no-deps --target "$crt" "nvidia-cuda-crt==$rt"
  touch "$crt/.complete"
fi
crtinc=$(dirname "$(dirname "$(find "$crt" -path '*/include/crt/host_config.h' | head -1)")")
[ -d "$crtinc" ] || { log "nvidia-cuda-crt==$rt has no include/crt/host_config.h"; exit 1; }

cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCLM_DIRECT_LINK=ON -DCLM_CUDA_INCLUDE_DIRS="$crtinc" >build-cuda.cmake.log 2>&1 || {
  cat build-cuda.cmake.log >&2; log "cmake configure failed"; exit 1; }
grep -q 'building the CUDA shim' build-cuda.cmake.log || {
  cat build-cuda.cmake.log >&2; log "configured a CPU shim, not the CUDA shim"; exit 1; }
cmake --build build-cuda -j "$(nproc)" >build-cuda.make.log 2>&1 || {
  tail -50 build-cuda.make.log >&2; log "CUDA shim build failed"; exit 1; }
rm -f build-cuda.cmake.log build-cuda.make.log
log "built build-cuda/libclmtorch.so (CUDA $cuda, CLM_WITH_CUDA, NCCL); testing it on the CPU"

# The test binary's runpath names build/; LD_LIBRARY_PATH takes precedence.
LD_LIBRARY_PATH="$PWD/build-cuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" CLM_EXPECT_SHIM=cuda \
  go test -count=1 ./torch
