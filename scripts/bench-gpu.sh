#!/usr/bin/env bash
# GPU throughput of clm and of the PyTorch reference, side by side on the same
# GPU: tokens/s, step time, MFU and peak memory per preset at the paper's
# setting (18 layers, width 768, context 128, vocabulary 52000, 128 sequences
# per step, bf16); and of the strongest PyTorch peer, torch.compile of the
# model with SDPA attention and fused AdamW (bench_gpu.py --compile), for
# CLM_BENCH_COMPILE_PRESETS, for which clm also runs without its fused kernels
# (train.fused_kernels = false: the A/B column) and with the step replayed
# from a CUDA graph (train.cuda_graphs = true). Writes OUT/bench-gpu.md. Run by
# scripts/device-check.sh (needs bin/device/train.test from `make device-bins`
# and a built shim).
#
#   scripts/bench-gpu.sh [OUT]     env: CLM_BENCH_PRESETS (default: all six presets),
#                                       CLM_BENCH_COMPILE_PRESETS (default,skipless-parallel; "" skips),
#                                       CLM_BENCH_PRECISION (bf16), CLM_BENCH_MICRO (128),
#                                       CLM_PEAK_TFLOPS (the GPU's bf16 dense peak; known GPUs by name)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-device-out}}
mkdir -p "$out"
py=${PYTHON:-python3}
presets=${CLM_BENCH_PRESETS:-default,default-parallel,skipless,skipless-parallel,value-skipinit,op}
compile_presets=${CLM_BENCH_COMPILE_PRESETS-default,skipless-parallel}
export CLM_BENCH_PRESETS=$presets
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
if [ -z "$gpu" ]; then
  echo "bench-gpu: no GPU (nvidia-smi found none); skipped"
  exit 0
fi
# MFU's denominator: the bf16 dense tensor-core peak of the GPU, in TFLOP/s.
if [ -z "${CLM_PEAK_TFLOPS:-}" ]; then
  case "$gpu" in
    *H100*PCIe*) CLM_PEAK_TFLOPS=756 ;;
    *H100*NVL*) CLM_PEAK_TFLOPS=835 ;;
    *H100*|*H200*|*GH200*|*H800*) CLM_PEAK_TFLOPS=989 ;;
    *B200*) CLM_PEAK_TFLOPS=2250 ;;
    *A100*) CLM_PEAK_TFLOPS=312 ;;
    *L40S*) CLM_PEAK_TFLOPS=362 ;;
    *A6000*|*A5000*|*A40*) CLM_PEAK_TFLOPS=155 ;;
    *) CLM_PEAK_TFLOPS=989; echo "bench-gpu: unknown GPU '$gpu': MFU against 989 TFLOP/s (set CLM_PEAK_TFLOPS)" >&2 ;;
  esac
fi
export CLM_PEAK_TFLOPS
# go_bench FILE TIMEOUT [VAR=VALUE ...]: clm's BenchmarkGPUTrainStep with the
# given environment, its result lines into $out/FILE.
go_bench() {
  local file=$1 limit=$2
  shift 2
  (cd train && env "$@" ../bin/device/train.test -test.run '^$' -test.bench 'GPUTrainStep' -test.benchtime 10x \
    -test.timeout "$limit") | grep '^BenchmarkGPUTrainStep' | sed -E 's/-[0-9]+[[:space:]]/\t/' > "$out/$file"
}
go_bench go-gpu.txt 4m
timeout 240 "$py" scripts/reference/bench_gpu.py "$presets" --precision "${CLM_BENCH_PRECISION:-bf16}" \
  --micro "${CLM_BENCH_MICRO:-128}" > "$out/py-gpu.txt"
files="go-gpu.txt py-gpu.txt"
: > "$out/go-gpu-composite.txt"
: > "$out/go-gpu-graphs.txt"
if [ -n "$compile_presets" ]; then
  # clm without its fused kernels (train.fused_kernels = false), for the A/B,
  # and with the step captured once and replayed (train.cuda_graphs = true).
  go_bench go-gpu-composite.txt 3m CLM_BENCH_FUSED=0 CLM_BENCH_PRESETS="$compile_presets"
  go_bench go-gpu-graphs.txt 3m CLM_BENCH_GRAPHS=1 CLM_BENCH_PRESETS="$compile_presets"
fi
: > "$out/py-gpu-compile.txt"
if [ -n "$compile_presets" ]; then
  # Compilation takes a minute or so per preset; its time is reported apart.
  timeout 300 "$py" scripts/reference/bench_gpu.py "$compile_presets" --compile --precision "${CLM_BENCH_PRECISION:-bf16}" \
    --micro "${CLM_BENCH_MICRO:-128}" > "$out/py-gpu-compile.txt"
  files="$files py-gpu-compile.txt"
fi
for f in $files; do
  if [ ! -s "$out/$f" ]; then
    echo "bench-gpu: $f is empty (the benchmark failed; see the output above)" >&2
    failed=1
  fi
done
field() { awk -v u="$2" '{ for (i = 2; i <= NF; i++) if ($(i) == u) print $(i-1) }' <<<"$1"; }
{
  echo "GPU: $gpu; $(date -u +%F); precision ${CLM_BENCH_PRECISION:-bf16}; $(( ${CLM_BENCH_MICRO:-128} )) sequences per forward; MFU against $CLM_PEAK_TFLOPS TFLOP/s (the bf16 dense spec-sheet peak); command: scripts/bench-gpu.sh"
  echo
  echo "| preset | clm tokens/s | reference tokens/s | speed-up | compile tokens/s | clm/compile | clm MFU % | ref MFU % | compile MFU % | clm peak GiB | ref peak GiB | compile peak GiB | compile warm-up s | clm ms/step | clm 1-sequence ms/step | clm composite tokens/s | clm CUDA-graph tokens/s | graph replays |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for p in ${presets//,/ }; do
    row() { grep -P "^$1/$p\t" "$out/$2" | tr '\t' ' '; }
    g=$(row BenchmarkGPUTrainStep go-gpu.txt) r=$(row BenchmarkGPUTrainStep py-gpu.txt)
    c=$(row BenchmarkGPUTrainStepCompile py-gpu-compile.txt)
    u=$(row BenchmarkGPUTrainStep go-gpu-composite.txt) h=$(row BenchmarkGPUTrainStep go-gpu-graphs.txt)
    gt=$(field "$g" tokens/s) rt=$(field "$r" tokens/s) ct=$(field "$c" tokens/s)
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b }'; }
    echo "| $p | $gt | $rt | $(ratio "$gt" "$rt") | $ct | $(ratio "$gt" "$ct") | $(field "$g" MFU%) | $(field "$r" MFU%) | $(field "$c" MFU%) | $(field "$g" peakGiB) | $(field "$r" peakGiB) | $(field "$c" peakGiB) | $(field "$c" compileS) | $(field "$g" ms/step) | $(field "$g" floorms/step) | $(field "$u" tokens/s) | $(field "$h" tokens/s) | $(field "$h" replays) |"
  done
} | tee "$out/bench-gpu.md"
exit "${failed:-0}"
