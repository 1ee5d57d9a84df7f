#!/usr/bin/env bash
# scripts/docker/build.sh cpu|cuda SITE OUT: the image's build stage builds clm
# against the shim in build/ (built by scripts/build-shim.sh against the
# libtorch in SITE, in a layer of its own), and stages in OUT what the runtime
# stage copies to the same path (OUT mirrors /):
#
#   /opt/clm/bin/clm               runpath $ORIGIN/../lib
#   /opt/clm/lib/libclmtorch.so    runpath SITE/torch/lib (and the CUDA runtime's folder)
#   SITE/torch/lib, SITE/nvidia    the libraries they load: for cpu the shim's
#                                  ldd closure, for cuda every shared library
#                                  (libtorch_cuda dlopens cuDNN's, NVRTC, ...)
#
# The commit for `clm version` comes from $CLM_COMMIT and $CLM_MODIFIED.
set -euo pipefail
cd "$(dirname "$0")/../.."
variant=${1:?usage: scripts/docker/build.sh cpu|cuda SITE OUT} site=${2:?SITE} out=${3:?OUT}
log() { printf 'docker-build: %s\n' "$*" >&2; }

[ -f build/libclmtorch.so ] || { log "no build/libclmtorch.so: scripts/build-shim.sh $variant first"; exit 1; }
mkdir -p "$out/opt/clm/bin" "$out/opt/clm/lib"
# shellcheck disable=SC2016 # $ORIGIN is the loader's, not the shell's
CGO_LDFLAGS='-Wl,-rpath,$ORIGIN/../lib' go build -trimpath \
  -ldflags "-X clm/internal/version.commit=${CLM_COMMIT:-} -X clm/internal/version.modified=${CLM_MODIFIED:-}" \
  -o "$out/opt/clm/bin/clm" ./cmd/clm
cp build/libclmtorch.so "$out/opt/clm/lib/"

case $variant in
  cpu) libs=$(ldd build/libclmtorch.so | awk -v s="$site/" 'index($3, s) == 1 { print $3 }' | xargs realpath) ;;
  cuda) libs=$(find "$site/torch/lib" "$site/nvidia" -name '*.so*' -type f -not -name 'libtorch_python.so') ;;
esac
for f in $libs; do
  mkdir -p "$out$(dirname "$f")"
  cp "$f" "$out$f"
done
log "staged clm, the $variant shim and $(echo "$libs" | wc -l) libraries ($(du -sh "$out" | cut -f1))"
