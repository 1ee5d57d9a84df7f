#!/usr/bin/env bash
# `make bench-peers`: clm's real training binary against its PyTorch peers on
# the CPU, at the same shapes and thread count: (a) eager PyTorch with SDPA
# attention, ln_f and the LM head only at the T-1 positions the loss uses,
# the positions as a slice of wpe, no dropout modules (p = 0), and
# torch.optim.AdamW(foreach=True) with foreach clipping, (b) torch.compile
# (Inductor, PEERS_COMPILE_MODE, default "default") of the same model
# (scripts/reference/bench_peers.py; train/peers_test.go holds both to
# clm's losses on the same weights and batches). Both
# peers and clm run the same step: accumulation, clipping at 1, AdamW (clm:
# adamw_torch) with decay 0.1, lr 1e-3, polynomial schedule with 5% warmup,
# fp32. Runs interleave clm, eager, compile, clm, ... per configuration; each
# is its own process, so its peak RSS is that configuration's.
#
#   scripts/bench-peers.sh
#
# Environment:
#   BENCH_COUNT        runs of each peer per configuration (default 3)
#   CLM_BENCH_THREADS  thread counts (default "1 2"); clm's train.threads,
#                      torch.set_num_threads, OMP_NUM_THREADS
#   PEERS_SIZES        "mid paper" (default both): mid = 6 layers x 256, 8 heads,
#                      vocabulary 8192, 2 micro-batches of 16 x 128 tokens per
#                      step; paper = 18 x 768, 12 heads, vocabulary 52000, one
#                      micro-batch of 8 x 128
#   PEERS_PRESETS      default "default skipless-parallel"
#   PEERS_PEERS        default "clm eager compile"
#   PEERS_COMPILE_MODE torch.compile's mode (default "default"; e.g.
#                      max-autotune-no-cudagraphs)
#   PEERS_MID_STEPS, PEERS_PAPER_STEPS
#                      warm-up+measured optimizer steps per run (default 2+3
#                      and 1+2); tokens/s is over the measured steps only
#   CLM_PEERS_SET      extra clm settings, each becoming a -set flag, e.g.
#                      'train.attention=materialised' or, once they exist,
#                      'train.fused_kernels=false train.checkpoint_activations=block'
#   PEERS_OUT          a folder to keep the raw results and the table in
#   CLM_PYTHON         default .clm/venv/bin/python (its libtorch is clm's)
#   ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS
#                      the libraries' own caps on the instruction set, for
#                      every process: avx2, AVX2 and AVX2 emulate a CPU
#                      without AVX-512 (clm's products then fall back to the
#                      BLAS and its attention rows to their AVX2 loops, as
#                      `clm version` says); the command shows them
#   PEERS_CPU          avx2: sets those three caps so (one that is set
#                      already is kept)
#
# clm trains on the local Python standard library with a tokenizer of the
# size's vocabulary, trained and tokenized once into their own cache
# ($CLM_CACHE/bench-peers/<size>) by a one-step priming run before any
# measurement; evaluation (one batch at the start and the end), statistics
# and periodic checkpoints are off, the final checkpoint is written after the
# last measured step. tokens/s: clm's from metrics.jsonl (log_every 1: the
# tokens of the steps after warm-up over the time between their records); the
# peers' from the same steps timed in-process. compile's warm-up (compiling,
# into an Inductor cache fresh for each invocation of this script: the first
# run of a configuration compiles cold, later runs find the cache) is shown
# apart (first run / median of the later ones). Peak RSS: each process's own
# maximum resident set size (rusage), start-up included (for clm: one
# evaluation batch of micro-batch size before and after, and the final
# checkpoint; the peers do neither).
#
# Cost: the defaults run 72 processes, about 40 minutes on a quiet 2-core
# machine, two thirds of it at the paper size (1 thread: ~12 s per step);
# `PEERS_SIZES=mid` alone takes about 14 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${PEERS_CPU:-} in
  "") ;;
  avx2) export ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-avx2} ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2} \
          MKL_ENABLE_INSTRUCTIONS=${MKL_ENABLE_INSTRUCTIONS:-AVX2} ;;
  *) echo "bench-peers: PEERS_CPU=$PEERS_CPU: want avx2 (or leave it unset)" >&2; exit 1 ;;
esac
py=${CLM_PYTHON:-.clm/venv/bin/python}
count=${BENCH_COUNT:-3}
threads_list=${CLM_BENCH_THREADS:-1 2}
sizes=${PEERS_SIZES:-mid paper}
presets=${PEERS_PRESETS:-default skipless-parallel}
peers=${PEERS_PEERS:-clm eager compile}
mid_steps=${PEERS_MID_STEPS:-2+3}
paper_steps=${PEERS_PAPER_STEPS:-1+2}
extra=${CLM_PEERS_SET:-}
bp=scripts/reference/bench_peers.py
clm=bin/clm
[ -x "$clm" ] || { echo "bench-peers: $clm is missing (make build)" >&2; exit 1; }
[ -x "$py" ] || { echo "bench-peers: $py is missing (make setup)" >&2; exit 1; }
cache=${CLM_CACHE:-$HOME/.cache/clm}/bench-peers
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TORCHINDUCTOR_CACHE_DIR=$tmp/inductor
sets=()
for s in $extra; do sets+=(-set "$s"); done

# size -> "layers width heads vocab context micro accumulation"
shape() {
  case $1 in
    mid) echo "6 256 8 8192 128 16 2" ;;
    paper) echo "18 768 12 52000 128 8 1" ;;
    *) echo "bench-peers: unknown size $1 (mid, paper)" >&2; exit 1 ;;
  esac
}
steps_of() { case $1 in mid) echo "$mid_steps" ;; paper) echo "$paper_steps" ;; esac; }

# experiment SIZE PRESET THREADS STEPS FILE: clm's experiment file.
experiment() {
  local L D H V C B A
  read -r L D H V C B A <<<"$(shape "$1")"
  cat >"$5" <<EOF
name = "bench-peers"

[model]
preset = "$2"
n_layer = $L
n_embd = $D
n_head = $H
vocab_size = $V
context_length = $C

[train]
device = "cpu"
precision = "fp32"
threads = $3
micro_batch = $B
eval_batch = $B
accumulation = $A
max_steps = $4
optimizer = "adamw_torch"
log_every = 1
eval_every = 1000000
eval_batches = 1
save_every = 1000000

[data]
source = "stdlib"
tokenizer = ""
tokenizer_vocab = $V
num_token_mult = 1
valid_docs = 16

[report]
every = 0
EOF
}

cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys those
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
torchv=$("$py" -c 'import torch; print(torch.__version__)')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+changes"
# Settings that change which kernels the libraries pick (an ISA cap emulates
# a CPU without AVX-512 on one with it, docs/benchmarks.md): a table measured
# under them says so in its command, and names clm's engine of products.
caps=""
for v in ATEN_CPU_CAPABILITY ONEDNN_MAX_CPU_ISA MKL_ENABLE_INSTRUCTIONS ONEDNN_DEFAULT_FPMATH_MODE; do
  [ -z "${!v:-}" ] || caps+="$v=${!v} "
done
about=$("$clm" version)
engine=$(sed -n 's/^matmul *float32 CPU products by \(oneDNN\|the BLAS\).*/\1/p' <<<"$about")
# The instruction set of clm's attention row loops (libtorch's capability).
rowisa=$(sed -n 's/^attention .* row loops for \([A-Z0-9]*\).*/\1/p' <<<"$about")
case " $extra " in *" train.fused_kernels=false "*) rowisa=SDPA ;; esac
case " $extra " in *" train.cpu_matmul="*) engine=$(echo "$extra" | sed -n 's/.*train\.cpu_matmul=\([^ ]*\).*/\1/p') ;; esac
command="${caps}BENCH_COUNT=$count CLM_BENCH_THREADS=\"$threads_list\" PEERS_SIZES=\"$sizes\" PEERS_PRESETS=\"$presets\" PEERS_MID_STEPS=$mid_steps PEERS_PAPER_STEPS=$paper_steps${extra:+ CLM_PEERS_SET=\"$extra\"} scripts/bench-peers.sh"
echo "bench-peers: $(date -u +%F), $cpu, $cores cores, libtorch $torchv, clm $rev (products by ${engine:-?}, attention rows ${rowisa:-SDPA}); $command"
start=$(date +%s)

# Priming: the tokenizer and token cache of each size, outside the measurements.
for size in $sizes; do
  shape "$size" >/dev/null
  mkdir -p "$cache/$size"
  experiment "$size" default 1 1 "$tmp/prime.toml"
  if ! CLM_CACHE=$cache/$size "$clm" -config "$tmp/prime.toml" -run-dir "$tmp/prime" \
      -set model.n_layer=1 -set model.n_embd=64 -set model.n_head=1 >"$tmp/prime.log" 2>&1; then
    cat "$tmp/prime.log" >&2; echo "bench-peers: priming $size failed" >&2; exit 1
  fi
  rm -rf "$tmp/prime"
done

# One measurement: appends "size preset threads peer run tokens/s warmup_s peakKiB extra" to raw.
raw=$tmp/raw.tsv
: >"$raw"
measure() {
  local size=$1 preset=$2 t=$3 peer=$4 run=$5 ws w s log=$tmp/run.log res mea
  ws=$(steps_of "$size"); w=${ws%+*}; s=${ws#*+}
  export OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t
  if [ "$peer" = clm ]; then
    experiment "$size" "$preset" "$t" $((w + s)) "$tmp/exp.toml"
    rm -rf "$tmp/run"
    if ! mea=$(CLM_CACHE=$cache/$size "$py" $bp measure -- "$clm" -config "$tmp/exp.toml" -run-dir "$tmp/run" \
        ${sets[@]+"${sets[@]}"} 2>"$log" | grep '^measure ') || ! grep -q 'rc=0' <<<"$mea"; then
      cat "$log" >&2; echo "bench-peers: clm failed ($size $preset, $t threads)" >&2; exit 1
    fi
    res=$("$py" $bp clm-metrics "$tmp/run/metrics.jsonl" --warmup "$w")
    rm -rf "$tmp/run"
  else
    if ! out=$("$py" $bp measure -- "$py" $bp peer --mode "$peer" --size "$size" --preset "$preset" \
        --threads "$t" --warmup "$w" --steps "$s" --compile-mode "${PEERS_COMPILE_MODE:-default}" 2>"$log") ||
        ! grep -q 'rc=0' <<<"$out"; then
      cat "$log" >&2; echo "bench-peers: $peer failed ($size $preset, $t threads)" >&2; exit 1
    fi
    res=$(grep '^result ' <<<"$out") mea=$(grep '^measure ' <<<"$out")
  fi
  field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
  local tps wu rss gb loss
  tps=$(field "$res" tokens_per_s) wu=$(field "$res" warmup_s) rss=$(field "$mea" peak_rss_kib) gb=$(field "$res" graph_breaks)
  loss=$(field "$res" loss)
  [ "$peer" = compile ] || gb=
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$preset" "$t" "$peer" "$run" "$tps" "${wu:--}" "$rss" "${gb:--}" >>"$raw"
  printf '  %-5s %-17s %s thr  %-7s run %s: %8.1f tokens/s  peak RSS %5d MB  loss %s%s\n' "$size" "$preset" "$t" "$peer" \
    "$run" "$tps" $((rss / 1024)) "$loss" "${wu:+  warm-up ${wu}s}${gb:+ (graph breaks $gb)}" >&2
}

for size in $sizes; do
  for preset in $presets; do
    for t in $threads_list; do
      for run in $(seq "$count"); do
        for peer in $peers; do
          measure "$size" "$preset" "$t" "$peer" "$run"
        done
      done
    done
  done
done

elapsed=$(( $(date +%s) - start ))
table=$tmp/table.md
"$py" - "$raw" "$peers" >"$table" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
peers = sys.argv[2].split()
confs = []
for r in rows:
    if tuple(r[:3]) not in confs:
        confs.append(tuple(r[:3]))
def get(conf, peer, i):
    return [float(r[i]) for r in rows if tuple(r[:3]) == conf and r[3] == peer]
others = [p for p in peers if p != "clm"]
head = ["size", "preset", "threads"] + [f"{p} tokens/s (min–max)" for p in peers]
if "clm" in peers:
    head += [f"speed clm/{p}" for p in others]
head += [f"{p} peak RSS MB" for p in peers]
if "clm" in peers:
    head += [f"RSS clm/{p}" for p in others]
if "compile" in peers:
    head += ["compile warm-up s (cold / warm)"]
print("| " + " | ".join(head) + " |")
print("|" + " --- |" * len(head))
for conf in confs:
    tps = {p: get(conf, p, 5) for p in peers}
    rss = {p: get(conf, p, 7) for p in peers}
    med = {p: statistics.median(v) for p, v in tps.items()}
    mrss = {p: statistics.median(v) / 1024 for p, v in rss.items()}
    cells = list(conf)
    cells += [f"{med[p]:.0f} ({min(tps[p]):.0f}–{max(tps[p]):.0f})" for p in peers]
    if "clm" in peers:
        cells += [f"{med['clm'] / med[p]:.2f}" for p in others]
    cells += [f"{mrss[p]:.0f}" for p in peers]
    if "clm" in peers:
        cells += [f"{mrss['clm'] / mrss[p]:.2f}" for p in others]
    if "compile" in peers:
        wu = get(conf, "compile", 6)
        cells += [f"{wu[0]:.0f} / {statistics.median(wu[1:]):.0f}" if len(wu) > 1 else f"{wu[0]:.0f} / –"]
    print("| " + " | ".join(cells) + " |")
if "clm" in peers and others:
    # Run by run: clm's run i over each peer's run i (the same round of the
    # interleaving, minutes apart), which the machine's drift affects less
    # than the ratio of medians.
    print()
    head = ["size", "preset", "threads"] + [f"clm/{p} run by run (median)" for p in others]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for conf in confs:
        cells = list(conf)
        for p in others:
            ratios = [c / o for c, o in zip(get(conf, "clm", 5), get(conf, p, 5))]
            cells.append(" ".join(f"{x:.2f}" for x in ratios) + f" ({statistics.median(ratios):.2f})")
        print("| " + " | ".join(cells) + " |")
EOF
{
  echo
  echo "bench-peers, $(date -u +%F): $cpu ($cores cores), libtorch $torchv, clm $rev (float32 products by ${engine:-?}, attention rows ${rowisa:-SDPA}), fp32; medians of $count interleaved runs"
  echo "(min–max: the spread); tokens/s over the measured steps after warm-up (mid $mid_steps, paper $paper_steps:"
  echo "warm-up+measured); speed ratios > 1 and RSS ratios < 1 favour clm; took ${elapsed}s. Command:"
  echo "$command"
  echo
  cat "$table"
} | tee "$tmp/report.md"
if [ -n "${PEERS_OUT:-}" ]; then
  mkdir -p "$PEERS_OUT"
  cp "$raw" "$tmp/report.md" "$PEERS_OUT/"
fi
