#!/usr/bin/env bash
# Times Go benchmarks and their PyTorch counterparts side by side, on the same
# libtorch and thread count, and prints the Go/PyTorch time ratio of each.
#
#   scripts/bench-compare.sh GO_PACKAGE GO_BENCH_REGEXP PYTHON_SCRIPT
#
# Environment: CLM_BENCH_THREADS (default 1), BENCH_COUNT runs each (default
# 5), CLM_PYTHON (default .clm/venv/bin/python), CLM_BENCH_ATTENTION (model).
# Both sides print `go test -bench` lines. Runs alternate Go, Python, Go, ...
# so that a slow spell of a shared machine hits both sides; the table shows
# the median of each side and the ratio of the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=$1 pattern=$2 pyscript=$3
threads=${CLM_BENCH_THREADS:-1}
count=${BENCH_COUNT:-5}
py=${CLM_PYTHON:-.clm/venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "libtorch $("$py" -c 'import torch; print(torch.__version__)'), $threads thread(s), $count runs each, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
go test -c -o "$out/bench.test" "$pkg"
for _ in $(seq "$count"); do
  (cd "$pkg" && CLM_BENCH_THREADS=$threads "$out/bench.test" -test.run '^$' -test.bench "$pattern") |
    grep '^Benchmark' | sed -E 's/-[0-9]+[[:space:]]+/\t/' >> "$out/go.txt"
  "$py" "$pyscript" "$threads" | sed -E 's/-[0-9]+[[:space:]]+/\t/' >> "$out/py.txt"
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }'; }
printf "%-46s %12s %12s %7s\n" "benchmark" "Go ms/op" "PyTorch ms" "Go/Py"
for k in $(cut -f1 "$out/go.txt" | awk '!seen[$0]++'); do
  g=$(awk -F'\t' -v k="$k" '$1 == k { split($3, a, " "); print a[1] }' "$out/go.txt" | median)
  p=$(awk -F'\t' -v k="$k" '$1 == k { split($3, a, " "); print a[1] }' "$out/py.txt" | median)
  [ -n "$p" ] && awk -v k="$k" -v g="$g" -v p="$p" 'BEGIN { printf "%-46s %12.4f %12.4f %7.2f\n", k, g/1e6, p/1e6, g/p }'
done
