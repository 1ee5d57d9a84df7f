#!/usr/bin/env bash
# scripts/docker/libtorch.sh cpu|cuda SITE: the image's build stage installs the
# libtorch of scripts/requirements.txt's pinned PyTorch wheel into SITE (pip
# --target: a site-packages folder whose layout the wheels' $ORIGIN rpaths
# expect), with only the libraries the shim loads:
#
#   cpu   the torch wheel without dependencies, plus the two CUDA libraries
#         that libtorch_cpu itself links (the CUDA runtime and CUPTI, for its
#         profiler; about 10 MB): no cuDNN, cuBLAS, NCCL, ...
#   cuda  the torch wheel and its CUDA libraries (cuda-toolkit[...], cuDNN,
#         cuSPARSELt, NCCL, NVSHMEM), none of its Python dependencies (sympy,
#         triton, ...); then nvcc from NVIDIA's wheels into $CUDA_TOOLKIT_DIR
#         for clm's kernels (scripts/cuda-toolkit.sh), outside SITE: the
#         runtime stage never sees it.
#
# pip is $PIP (default /opt/pip/bin/pip).
set -euo pipefail
cd "$(dirname "$0")/../.."
variant=${1:?usage: scripts/docker/libtorch.sh cpu|cuda SITE} site=${2:?SITE}
pip=${PIP:-/opt/pip/bin/pip}
log() { printf 'libtorch: %s\n' "$*" >&2; }

torch=$(grep -E '^torch==' scripts/requirements.txt)
[ -n "$torch" ] || { log "no torch== pin in scripts/requirements.txt"; exit 1; }
"$pip" install --quiet --no-cache-dir --no-deps --target "$site" "$torch"

# torch's requirements that carry libraries, markers dropped (the image is
# Linux): cuda-toolkit[cublas,cudart,...]==V and nvidia-*==V.
meta=$(find "$site" -maxdepth 2 -path '*/torch-*.dist-info/METADATA' | head -1)
libs=$(sed -n -E 's/^Requires-Dist: ((cuda-toolkit|nvidia-)[^;]*).*/\1/p' "$meta" | tr -d ' ')
case $variant in
  cpu) libs=$(echo "$libs" | sed -n -E 's/^cuda-toolkit\[[^]]*\]/cuda-toolkit[cudart,cupti]/p') ;;
  cuda) ;;
  *) log "unknown variant $variant (want cpu or cuda)"; exit 2 ;;
esac
[ -n "$libs" ] || { log "$torch names no CUDA libraries: is it a CUDA build?"; exit 1; }
log "$torch for $variant, with: $(echo $libs)"
# One pip call for all of them: pip --target skips a top-level folder (nvidia/)
# that an earlier call created.
# shellcheck disable=SC2086
"$pip" install --quiet --no-cache-dir --target "$site" $libs

if [ "$variant" = cuda ]; then
  PYTHON=$(dirname "$pip")/python scripts/cuda-toolkit.sh "$site" >/dev/null
fi
