#!/usr/bin/env bash
# scripts/docker-bases.sh: the base images the Dockerfile builds from
# (BASE_IMAGE, GO_IMAGE), on a docker that may not reach Docker Hub. Prints
# the build arguments to use, e.g.
#
#   BASE_IMAGE=python:3.11-slim-bookworm
#   GO_IMAGE=clm-standin/golang:1.26-bookworm
#
# Each base is the real image when the daemon has it or can pull it. Else a
# stand-in is assembled once from this machine's Debian packages with
# mmdebstrap and tagged clm-standin/<name> (never the real name):
#
#   python:3.11-slim-bookworm  Debian bookworm (minbase) with python3 (3.11),
#                              python3-venv and ca-certificates
#   golang:1.26-bookworm       this machine's Go toolchain (go env GOROOT, a
#                              1.26 release) in /usr/local/go
#
# The stand-ins carry this machine's CA bundle and set PIP_CERT to it, so that
# pip and go inside a build work behind an intercepting HTTPS proxy.
# CLM_STANDIN=1 uses stand-ins without trying to pull; CLM_STANDIN_REBUILD=1
# assembles them again.
set -euo pipefail
docker=${DOCKER:-docker}
base=python:3.11-slim-bookworm
goimg=golang:1.26-bookworm
gover=1.26
log() { printf 'docker-bases: %s\n' "$*" >&2; }

have() { "$docker" image inspect "$1" >/dev/null 2>&1; }

# real NAME: the real image is here or can be pulled.
real() {
  [ "${CLM_STANDIN:-0}" = 1 ] && return 1
  have "$1" && return 0
  log "pulling $1"
  timeout 300 "$docker" pull --quiet "$1" >&2 2>/dev/null
}

ca=/etc/ssl/certs/ca-certificates.crt
changes=(--change "ENV PIP_CERT=$ca" --change 'CMD ["bash"]'
  --change "LABEL clm.standin=scripts/docker-bases.sh")

standin_base() {
  local tag=clm-standin/$base tmp
  if have "$tag" && [ "${CLM_STANDIN_REBUILD:-0}" != 1 ]; then return; fi
  command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing (apt-get install mmdebstrap)"; exit 1; }
  [ -s "$ca" ] || { log "no CA bundle at $ca"; exit 1; }
  log "assembling $tag with mmdebstrap (bookworm, python3, python3-venv, ca-certificates)"
  tmp=$(mktemp -d)
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3,python3-venv \
    --customize-hook="copy-in $ca /etc/ssl/certs" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tmp/rootfs.tar" >&2
  "$docker" import "${changes[@]}" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tmp/rootfs.tar" "$tag" >/dev/null
  rm -rf "$tmp"
}

standin_go() {
  local tag=clm-standin/$goimg goroot v
  goroot=$(go env GOROOT 2>/dev/null) || { log "no Go on this machine for the $goimg stand-in"; exit 1; }
  v=$(go env GOVERSION)
  case $v in go$gover|go$gover.*) ;; *) log "this machine's Go is $v, not the $gover of $goimg"; exit 1 ;; esac
  if have "$tag" && [ "$("$docker" image inspect -f '{{index .Config.Labels "clm.go"}}' "$tag")" = "$v" ] \
    && [ "${CLM_STANDIN_REBUILD:-0}" != 1 ]; then return; fi
  log "assembling $tag from $goroot ($v)"
  tar -C "$goroot" -c --transform 's,^\.,usr/local/go,' . |
    "$docker" import "${changes[@]}" --change "LABEL clm.go=$v" \
      --change 'ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag" >/dev/null
}

if real "$base"; then echo "BASE_IMAGE=$base"; else standin_base; echo "BASE_IMAGE=clm-standin/$base"; fi
if real "$goimg"; then echo "GO_IMAGE=$goimg"; else standin_go; echo "GO_IMAGE=clm-standin/$goimg"; fi
