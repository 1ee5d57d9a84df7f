#!/usr/bin/env bash
# Benchmarks the Go binding against PyTorch eager on the same libtorch and
# thread count: per-op dispatch and one MLP training step. Prints both sides
# in `go test -bench` format and the Go/Python time ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${CLM_BENCH_THREADS:-1}
count=${BENCH_COUNT:-5}
py=${CLM_PYTHON:-.clm/venv/bin/python}
out=$(mktemp -d)
echo "libtorch threads: $threads, $count runs each"
CLM_BENCH_THREADS=$threads go test -run '^$' -bench 'OpDispatch$|MLPStep' -count "$count" ./torch/ | grep '^Benchmark' | sed -E 's/-[0-9]+[[:space:]]+/\t/' | tee "$out/go.txt"
for _ in $(seq "$count"); do "$py" scripts/reference/bench_torch.py "$threads"; done | sed -E 's/-[0-9]+[[:space:]]+/\t/' | tee "$out/py.txt"
awk -F'\t' 'FNR==NR { split($3, a, " "); g[$1] += a[1]; gn[$1]++; next }
  { split($3, a, " "); p[$1] += a[1]; pn[$1]++ }
  END { printf "\n%-22s %14s %14s %8s\n", "benchmark", "Go ns/op", "PyTorch ns/op", "Go/Py";
        for (k in g) if (k in p) printf "%-22s %14.0f %14.0f %8.2f\n", k, g[k]/gn[k], p[k]/pn[k], (g[k]/gn[k])/(p[k]/pn[k]) }' \
  "$out/go.txt" "$out/py.txt"
rm -rf "$out"
