#!/usr/bin/env bash
# make docker-check: build both images and check them in containers, on this
# machine, with a docker daemon of its own.
#
#  1. Installs docker.io and mmdebstrap with apt-get when missing (root).
#  2. Starts a private dockerd (its own socket; no iptables, no masquerading;
#     storage in $CLM_DOCKER_ROOT, default /var/lib/clm-docker, so layers stay
#     cached between runs on this machine) and stops it on the way out.
#  3. Base images: the real ones where Docker Hub answers, else stand-ins from
#     Debian packages (scripts/docker-bases.sh).
#  4. Builds clm:cpu and clm (CUDA) with `make docker-build`, timed, sized,
#     then prunes the images they replaced and the build cache beyond
#     $CLM_DOCKER_KEEP (default 20GB).
#  5. A broken image does not build: the Dockerfile with the shim deleted
#     from the runtime stage must fail at its `clm version` check.
#  6. The container checks of cmd/clm/image_test.go (TestImageCPU,
#     TestImageCUDAWithoutGPU) against the two images.
#
# CLM_DOCKER_HOST=unix:///... uses a running daemon instead of starting one.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'docker-check: %s\n' "$*" >&2; }
export DOCKER=/usr/bin/docker DOCKER_BUILDKIT=1   # Debian's client: another on the PATH may lack BuildKit
t0=$(date +%s)

# --- 1. tools ------------------------------------------------------------------
need=()
{ [ -x "$DOCKER" ] && command -v dockerd >/dev/null; } || need+=(docker.io)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "needs ${need[*]}: install them, or run as root"; exit 1; }
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- 2. a private daemon -----------------------------------------------------------
if [ -n "${CLM_DOCKER_HOST:-}" ]; then
  export DOCKER_HOST=$CLM_DOCKER_HOST
else
  [ "$(id -u)" = 0 ] || { log "starting a docker daemon needs root (or set CLM_DOCKER_HOST)"; exit 1; }
  run=$(mktemp -d /tmp/clm-dockerd.XXXXXX)
  dockerd --data-root "${CLM_DOCKER_ROOT:-/var/lib/clm-docker}" --exec-root "$run/exec" --pidfile "$run/pid" \
    -H "unix://$run/docker.sock" --iptables=false --ip-masq=false --storage-driver=overlay2 >"$run/dockerd.log" 2>&1 &
  dpid=$!
  # dockerd leaves its network namespace mounted under the exec root.
  stop() {
    kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
    umount "$run"/exec/netns/* 2>/dev/null || true
    rm -rf "$run" || log "could not remove $run"
  }
  trap stop EXIT
  export DOCKER_HOST=unix://$run/docker.sock
  for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
  "$DOCKER" info >/dev/null 2>&1 || { cat "$run/dockerd.log" >&2; log "dockerd did not start (log above)"; exit 1; }
fi

# --- 3. bases ------------------------------------------------------------------------
bases=$(scripts/docker-bases.sh)
eval "$bases"
log "bases: $(echo $bases)"

# --- 4. the images ---------------------------------------------------------------------
declare -A took size
for v in cpu cuda; do
  s=$(date +%s)
  make --no-print-directory docker-build VARIANT="$v" DOCKER="$DOCKER" BASE_IMAGE="$BASE_IMAGE" GO_IMAGE="$GO_IMAGE" \
    DOCKER_BUILD_ARGS=--quiet >/dev/null
  took[$v]=$(( $(date +%s) - s ))
  img=$([ "$v" = cpu ] && echo clm:cpu || echo clm)
  size[$v]=$("$DOCKER" image inspect -f '{{.Size}}' "$img" | awk '{ printf "%.2f GB", $1 / 1e9 }')
  log "built $img ($v) in ${took[$v]}s: ${size[$v]}"
done

# The images these builds replaced are untagged now, and BuildKit's cache
# grows with every change: left alone, a data root that runs this often
# fills its disk (77 GB here after a day of runs). Keep the two images and
# the most recently used cache, up to CLM_DOCKER_KEEP (default 20GB).
"$DOCKER" image prune -f >/dev/null
"$DOCKER" builder prune -f --keep-storage "${CLM_DOCKER_KEEP:-20GB}" >/dev/null
log "data root after pruning: $("$DOCKER" system df --format '{{.Type}} {{.Size}}' | paste -sd ',' | sed 's/,/, /g')"

# --- 5. a broken image is not built -------------------------------------------------
broken=$(sed '/^RUN \["clm", "version"\]/i RUN rm /opt/clm/lib/libclmtorch.so' Dockerfile)
if grep -q 'rm /opt/clm/lib/libclmtorch.so' <<<"$broken" && ! out=$(echo "$broken" | "$DOCKER" build --network host \
  --build-arg VARIANT=cpu --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg GO_IMAGE="$GO_IMAGE" --progress plain -t clm:broken -f - . 2>&1); then
  grep -q 'libclmtorch.so: cannot open shared object file' <<<"$out" || { echo "$out" | tail -20 >&2; log "the broken image failed for another reason"; exit 1; }
  log "a runtime stage without the shim fails docker build: $(grep -m1 -o 'clm: error while loading shared libraries.*' <<<"$out")"
else
  log "the Dockerfile with the shim deleted from the runtime stage built: the image check does not work"; exit 1
fi

# --- 6. the containers ---------------------------------------------------------------
s=$(date +%s)
out=$(mktemp)
rc=0
CLM_IMAGE_CPU=clm:cpu CLM_IMAGE_CUDA=clm CLM_IMAGE_COMMIT=$(git rev-parse HEAD) \
  go test -count=1 -timeout 20m -run '^TestImage' -v ./cmd/clm >"$out" 2>&1 || rc=$?
grep -v '^=== ' "$out" >&2 || true
rm -f "$out"
[ "$rc" = 0 ] || { log "container checks failed"; exit 1; }
log "done in $(( $(date +%s) - t0 ))s: clm:cpu ${size[cpu]} (built in ${took[cpu]}s), clm ${size[cuda]} (built in ${took[cuda]}s), container checks $(( $(date +%s) - s ))s"
