#!/usr/bin/env bash
# Times Go benchmarks and their PyTorch counterparts side by side, on the same
# libtorch and thread count, and prints the Go/PyTorch time ratio of each.
#
#   scripts/bench-compare.sh GO_PACKAGE GO_BENCH_REGEXP PYTHON_SCRIPT
#
# Environment: CLM_BENCH_THREADS (default 1), BENCH_COUNT runs each (default
# 5), CLM_PYTHON (default .clm/venv/bin/python), CLM_BENCH_ATTENTION (model).
# Both sides print `go test -bench` lines; the table shows means.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=$1 pattern=$2 pyscript=$3
threads=${CLM_BENCH_THREADS:-1}
count=${BENCH_COUNT:-5}
py=${CLM_PYTHON:-.clm/venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "libtorch $("$py" -c 'import torch; print(torch.__version__)'), $threads thread(s), $count runs each, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
CLM_BENCH_THREADS=$threads go test -run '^$' -bench "$pattern" -count "$count" "$pkg" |
  grep '^Benchmark' | sed -E 's/-[0-9]+[[:space:]]+/\t/' > "$out/go.txt"
for _ in $(seq "$count"); do "$py" "$pyscript" "$threads"; done |
  sed -E 's/-[0-9]+[[:space:]]+/\t/' > "$out/py.txt"
awk -F'\t' 'FNR==NR { split($3, a, " "); g[$1] += a[1]; gn[$1]++; if (!(($1) in seen)) { seen[$1]=1; order[++n]=$1 }; next }
  { split($3, a, " "); p[$1] += a[1]; pn[$1]++ }
  END { printf "%-46s %12s %12s %7s\n", "benchmark", "Go ms/op", "PyTorch ms", "Go/Py";
        for (i = 1; i <= n; i++) { k = order[i]; if (k in p)
          printf "%-46s %12.4f %12.4f %7.2f\n", k, g[k]/gn[k]/1e6, p[k]/pn[k]/1e6, (g[k]/gn[k])/(p[k]/pn[k]) } }' \
  "$out/go.txt" "$out/py.txt"
