#!/usr/bin/env bash
# scripts/build-shim.sh KIND PREFIX DIR: build the shim (torch/csrc) with CMake
# into DIR against the libtorch at PREFIX (torch.utils.cmake_prefix_path of a
# PyTorch install, or a libtorch folder), and check that it is the kind asked:
#
#   auto  find_package(Torch): the CUDA shim where a CUDA toolkit is installed,
#         else a CPU shim (make setup)
#   cpu   a CPU shim linked to libtorch_cpu and libc10 only, whatever else is
#         installed (the CPU image)
#   cuda  the CUDA shim with clm's CUDA kernels, linked directly against a
#         CUDA build of the PyTorch wheel; nvcc is $CLM_NVCC, else one of the
#         runtime's exact version from NVIDIA's wheels (scripts/cuda-toolkit.sh)
#         (the CUDA image, make check-cuda-shim)
#
# CMake's output goes to DIR.cmake.log and DIR.make.log, shown on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/build-shim.sh auto|cpu|cuda PREFIX DIR} prefix=${2:?PREFIX} dir=${3:?DIR}
log() { printf 'build-shim: %s\n' "$*" >&2; }

args=(-S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DCLM_CPU_SHIM=OFF -DCLM_DIRECT_LINK=OFF)
case $kind in
  auto) ;;
  cpu) args+=(-DCLM_CPU_SHIM=ON) ;;
  cuda)
    site=$(cd "$prefix/../../.." && pwd)   # PREFIX is SITE/torch/share/cmake
    nvcc=${CLM_NVCC:-}   # else the wheel toolkit ($CUDA_TOOLKIT_DIR when set: the image)
    [ -n "$nvcc" ] || nvcc=$(scripts/cuda-toolkit.sh "$site")
    inc=$(cd "$(dirname "$nvcc")/../include" && pwd)
    args+=(-DCLM_DIRECT_LINK=ON -DCLM_CUDA_INCLUDE_DIRS="$inc" -DCLM_NVCC="$nvcc") ;;
  *) log "unknown kind $kind (want auto, cpu or cuda)"; exit 2 ;;
esac

start=$(date +%s)
cmake "${args[@]}" >"$dir.cmake.log" 2>&1 || { cat "$dir.cmake.log" >&2; log "cmake configure failed (log above)"; exit 1; }
# Every kind: the fused CPU kernels must run in libtorch's OpenMP team
# (CMakeLists.txt), not on one thread.
want=("run in libtorch's OpenMP team")
case $kind in
  cpu) want+=('building the CPU shim') ;;
  cuda) want+=('building the CUDA shim' 'clm: CUDA kernels:') ;;
esac
for w in "${want[@]}"; do
  grep -q "$w" "$dir.cmake.log" || { cat "$dir.cmake.log" >&2; log "asked for a $kind shim, but CMake configured otherwise (no '$w')"; exit 1; }
done
cmake --build "$dir" -j "$(nproc)" >"$dir.make.log" 2>&1 || { tail -50 "$dir.make.log" >&2; log "shim build failed (log above)"; exit 1; }
rm -f "$dir.cmake.log" "$dir.make.log"
log "built $dir/libclmtorch.so ($kind) in $(( $(date +%s) - start ))s"
