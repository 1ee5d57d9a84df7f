#!/usr/bin/env bash
# scripts/cuda-toolkit.sh SITE: a CUDA toolkit from NVIDIA's PyPI wheels, for
# compiling clm's CUDA shim on a machine without one; prints nvcc's path.
#
# SITE is the site-packages folder that holds PyTorch's CUDA wheels
# (nvidia-cuda-runtime, ...). The toolkit (nvcc, nvvm, the crt headers, the
# runtime and cccl) is of exactly the runtime's version, so that what nvcc
# compiles links against what PyTorch loads. It is installed once into
# $CUDA_TOOLKIT_DIR (default $CLM_CACHE/cuda-toolkit-<version>) by the pip of
# $PYTHON (default python3), about 300 MB; an interrupted install is redone.
set -euo pipefail
site=${1:?usage: scripts/cuda-toolkit.sh SITE_PACKAGES}
py=${PYTHON:-python3}
log() { printf 'cuda-toolkit: %s\n' "$*" >&2; }

# A wheel's version, from its dist-info folder beside PyTorch ("" if none).
wheel_version() {
  local d
  d=$(find "$site" -maxdepth 1 -type d -name "$1-*.dist-info" | head -1)
  [ -n "$d" ] || return 0
  d=${d##*/$1-}
  echo "${d%.dist-info}"
}
rt=$(wheel_version nvidia_cuda_runtime)
[ -n "$rt" ] || rt=$(wheel_version nvidia_cuda_runtime_cu12)
[ -n "$rt" ] || { log "no nvidia-cuda-runtime wheel in $site: not a CUDA build of PyTorch"; exit 1; }
case "$rt" in
  13.*) ;;
  *) log "CUDA runtime $rt: the toolkit wheels installed here are CUDA 13's (nvidia-cuda-nvcc, nvidia-nvvm, ...)"; exit 1 ;;
esac
cccl=$(wheel_version nvidia_cuda_cccl)
[ -n "$cccl" ] || cccl=$rt   # none beside PyTorch: the runtime's own

cache=${CLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clm}
tk=${CUDA_TOOLKIT_DIR:-$cache/cuda-toolkit-$rt}
if [ ! -f "$tk/.complete" ]; then
  log "fetching CUDA $rt's nvcc, nvvm, crt, runtime and cccl wheels into $tk (about 300 MB, once)"
  rm -rf "$tk"
  "$py" -m pip install --quiet --no-deps --no-cache-dir --target "$tk" "nvidia-cuda-nvcc==$rt" "nvidia-nvvm==$rt" \
    "nvidia-cuda-crt==$rt" "nvidia-cuda-runtime==$rt" "nvidia-cuda-cccl==$cccl" >&2
  touch "$tk/.complete"
fi
nvcc=$(find "$tk" -path '*/bin/nvcc' -type f | head -1)
[ -x "$nvcc" ] || { log "no bin/nvcc in $tk"; exit 1; }
[ -f "$(dirname "$nvcc")/../include/crt/host_config.h" ] || { log "no include/crt/host_config.h beside $nvcc"; exit 1; }
echo "$nvcc"
