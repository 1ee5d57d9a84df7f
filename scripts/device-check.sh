#!/usr/bin/env bash
# The one script a GPU machine runs (see ../shared/DESIGN.md §6 and
# docs/hardware.md). That machine has CUDA PyTorch, nvcc and cmake, but no Go and no
# network, so the Go test binaries are built beforehand on a workstation:
#
#   make device-bins          # here: bin/device/*.test, built against build/
#   <device tool> run, carrying bin/device:  scripts/device-check.sh
#
# It builds the shim against the machine's CUDA PyTorch, runs the GPU tests
# of every test binary (CPU-only tests are left to `make test`; 3 minutes at
# most each), then scripts/bench-gpu.sh, and writes a summary to $OUT (or
# ./device-out). Every stage has its own time limit (tests 3 min per binary,
# each side of the benchmark 4 min), so that a hang costs that stage and
# leaves the others' results in $OUT; a normal run takes a few minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
log() { printf '%s\n' "$*" | tee -a "$out/summary.txt"; }

py=${PYTHON:-python3}
prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
torchlib=$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
log "device-check $(date -u +%FT%TZ)"
log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi: none')"
log "torch $("$py" -c 'import torch; print(torch.__version__, torch.version.cuda)')"

start=$(date +%s)
# find_package(Torch) with the machine's CUDA toolkit, as a workstation with a
# GPU does. If TorchConfig.cmake refuses the toolkit (version checks, missing
# pieces), link libtorch directly with the toolkit's headers instead: the same
# build `make check-cuda-shim` compiles on every CI run.
build_shim() {
  rm -rf build
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" "$@" >>"$out/cmake.log" 2>&1 &&
    cmake --build build -j "$(nproc)" >>"$out/cmake.log" 2>&1 &&
    grep -q 'building the CUDA shim' "$out/cmake.log"
}
: >"$out/cmake.log"
if ! build_shim; then
  log "find_package(Torch) build failed or gave a CPU shim (cmake.log); linking libtorch directly"
  cudainc=""
  if command -v nvcc >/dev/null; then cudainc="$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)/include"; fi
  echo "---- direct link (CLM_CUDA_INCLUDE_DIRS=$cudainc)" >>"$out/cmake.log"
  if ! build_shim -DCLM_DIRECT_LINK=ON -DCLM_CUDA_INCLUDE_DIRS="$cudainc" -DCLM_NVCC="$(command -v nvcc || true)"; then
    # Without the CUDA kernels (torch/csrc/*.cu): if nvcc itself is what
    # fails, the rest of the check still runs (TestFusedCUDAKernelsBuilt
    # then fails, below).
    echo "---- direct link without the CUDA kernels" >>"$out/cmake.log"
    if ! build_shim -DCLM_DIRECT_LINK=ON -DCLM_CUDA_INCLUDE_DIRS="$cudainc" -DCLM_NVCC=none; then
      log "shim build FAILED (see cmake.log)"; tail -30 "$out/cmake.log"; exit 1
    fi
    log "shim built only WITHOUT the CUDA kernels (nvcc failed, see cmake.log)"
  fi
fi
log "shim built in $(( $(date +%s) - start ))s: $(grep -o 'clm: .*building the CUDA shim' "$out/cmake.log" | tail -1)"
# The fused ops' CUDA kernels (torch/csrc/*.cu, by nvcc): the fused tests
# (TestFusedCUDAKernelsBuilt, TestFusedActGPU, TestFused*CUDA) compare them
# with the CUDA composite ops and the CPU, and fail when they were not built.
log "$(grep -o 'clm: CUDA kernels: .*\|clm: no nvcc.*' "$out/cmake.log" | tail -1)"
export CLM_REQUIRE_FUSED_KERNELS=1

export LD_LIBRARY_PATH="$PWD/build:$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# What the build is and sees, first: a CUDA build, with its kernels, on this GPU.
if [ -x bin/device/clm ]; then
  bin/device/clm version >"$out/version.txt" 2>&1 || log "clm version FAILED"
  tee -a "$out/summary.txt" <"$out/version.txt"
fi
export CLM_PYTHON="$(command -v "$py")" CLM_REQUIRE_REFERENCE=1
status=0
for bin in bin/device/*.test; do
  [ -x "$bin" ] || { log "no test binaries in bin/device (run make device-bins first)"; exit 1; }
  pkg=$(basename "$bin" .test)
  # Test binaries run from their package directory, as `go test` does.
  if (cd "$pkg" 2>/dev/null || cd .; "$OLDPWD/$bin" -test.run "${DEVICE_TESTS:-GPU|Fused.*CUDA}" -test.v -test.timeout 3m) >"$out/$pkg.log" 2>&1; then
    log "PASS $pkg: $(grep -c '^--- PASS' "$out/$pkg.log") passed, $(grep -c '^--- SKIP' "$out/$pkg.log") skipped"
  else
    status=1
    log "FAIL $pkg"; grep -E '^(--- FAIL|panic|\s+\S+_test.go:)' "$out/$pkg.log" | head -20 | tee -a "$out/summary.txt"
  fi
  grep -E '^\s+\S+_test.go:[0-9]+: ' "$out/$pkg.log" | head -20 >>"$out/summary.txt"
done
# The product end to end on the GPU: `make demo`'s experiment (tokenizer
# training and data preparation on the local Python's standard library,
# bf16 training with micro-batch fitting, evaluation, checkpoints). The CPU
# demo starts at eval loss 8.35 and ends between 4.3 and 5.2 (seeds 0-2: the
# small SAS model leaves a loss plateau after 100-200 steps); the GPU run
# must get below 6.0.
if [ -x bin/device/clm ]; then
  run=/tmp/clm-device-run
  rm -rf "$run"
  t0=$(date +%s)
  if CLM_CACHE=/tmp/clm-device-cache timeout 300 bin/device/clm -config experiments/tiny.toml -run-dir "$run" \
      >"$out/clm-tiny.log" 2>&1; then
    evals=$(grep -o 'eval_loss [0-9.]*' "$out/clm-tiny.log" | awk '{ printf "%s ", $2 }')
    cp "$run/metrics.jsonl" "$out/clm-tiny-metrics.jsonl" 2>/dev/null
    if awk -v e="$evals" 'BEGIN { n = split(e, a, " "); exit !(n > 1 && a[n] < 6.0) }'; then
      log "PASS clm tiny in $(( $(date +%s) - t0 ))s: eval losses $evals"
    else
      status=1; log "FAIL clm tiny: eval losses '$evals' (want the last below 6.0)"
    fi
    grep -E '^model |micro-batch fitting' "$out/clm-tiny.log" | head -2 | tee -a "$out/summary.txt"
  else
    status=1; log "FAIL clm tiny (see clm-tiny.log)"; tail -5 "$out/clm-tiny.log" | tee -a "$out/summary.txt"
  fi
fi
if [ -x scripts/bench-gpu.sh ]; then
  scripts/bench-gpu.sh "$out" || status=1
fi
log "total $(( $(date +%s) - start ))s, status $status"
exit $status
