# clm — see README.md. Every target sets itself up on first use.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED := 1
# Reference tests fail (instead of skipping) when the reference Python is
# missing, unless the user chose their own libtorch with LIBTORCH.
export CLM_REQUIRE_REFERENCE ?= $(if $(LIBTORCH),0,1)
TEST_TIMEOUT ?= 25m

SHIM := build/libclmtorch.so

.PHONY: all setup build docs test vet docker-build docker-check bench bench-torch bench-model bench-train bench-optim bench-peers bench-data fuzz check-cuda-shim device-bins clean demo \
	fig2 fig4 fig5 fig9 fig10 baselines long op of fig2-seeds lr-sweep

all: build

# Idempotent: a cached virtualenv and an up-to-date shim make this a no-op.
setup:
	@scripts/setup.sh

$(SHIM): CMakeLists.txt torch/csrc/*.cpp torch/csrc/*.h $(wildcard torch/csrc/*.cu)
	@scripts/setup.sh

# The commit clm reports (`clm version`, the run folder); "+dirty" when the
# tree has uncommitted changes. Docker builds pass it as a build argument.
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
MODIFIED ?= $(shell test -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" && echo true)
LDFLAGS := -X clm/internal/version.commit=$(COMMIT) -X clm/internal/version.modified=$(MODIFIED)

build: $(SHIM)
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/clm ./cmd/clm
	@echo "built bin/clm"

# docs/configuration.md from the configuration structs' doc comments
# (cmd/configdoc; TestPageIsCurrent fails while the page is stale).
docs:
	$(GO) run ./cmd/configdoc

# staticcheck, pinned; `go run` fetches it through the module proxy.
vet: $(SHIM)
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go' -not -path './.clm/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt -w these files: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@scripts/hadolint.sh Dockerfile

test: $(SHIM) vet
	@set -o pipefail; $(GO) test -json -timeout $(TEST_TIMEOUT) ./... | $(GO) run ./internal/testkit/testsum

# The images (see Dockerfile): VARIANT=cuda (clm) or cpu (clm:cpu), from
# BASE_IMAGE and GO_IMAGE when given (scripts/docker-bases.sh makes stand-ins
# where Docker Hub is out of reach).
VARIANT ?= cuda
DOCKER ?= docker
IMAGE ?= $(if $(filter cpu,$(VARIANT)),clm:cpu,clm)
RELEASE := $(shell sed -n 's/^const Release = "\(.*\)"/\1/p' internal/version/version.go)
docker-build:
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host --build-arg VARIANT=$(VARIANT) \
	  $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) $(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) \
	  --build-arg CLM_VERSION=$(RELEASE) --build-arg CLM_COMMIT=$(COMMIT) --build-arg CLM_MODIFIED=$(MODIFIED) \
	  -t $(IMAGE) $(DOCKER_BUILD_ARGS) .

# Both images built by a private docker daemon and checked in containers
# (cmd/clm/image_test.go); CI runs it. Needs root; installs docker.io and
# mmdebstrap when missing. See scripts/docker-check.sh.
docker-check: $(SHIM)
	@scripts/docker-check.sh

# The CUDA shim compiled against the wheel's CUDA libtorch (no GPU or nvcc
# needed) and the binding's tests run against it on the CPU; CI runs it.
check-cuda-shim: $(SHIM)
	@scripts/check-cuda-shim.sh

# A short fuzzing budget per target (CI runs it; found inputs land in
# testdata/fuzz and become regression cases). The budget is a count of
# executions, not a duration: Go 1.26's fuzz coordinator can fail a target
# with a bare "context deadline exceeded" when a -fuzztime duration runs out
# while a worker is mid-input (go.dev/issue/75804, fixed in Go 1.27). A count
# sets no deadline. 200000 executions take 5-15 s per target on 2 cores;
# FUZZTIME=10m (or 5000000x) fuzzes longer.
FUZZTIME ?= 200000x
fuzz: $(SHIM)
	$(GO) test ./data/bpe -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME)
	$(GO) test ./data/bpe -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME)
	$(GO) test ./safetensors -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME)

# Benchmarks against PyTorch eager on the same libtorch and threads; see
# docs/benchmarks.md.
bench-torch: $(SHIM)
	scripts/bench-compare.sh ./torch/ 'OpDispatch$$|MLPStep' scripts/reference/bench_torch.py

bench-model: $(SHIM)
	scripts/bench-compare.sh ./model/ 'ForwardBackward' scripts/reference/bench_model.py

bench-train: $(SHIM)
	scripts/bench-compare.sh ./train/ 'TrainStep' scripts/reference/bench_train.py

# clm's real binary (bin/clm training an experiment) against eager PyTorch
# (SDPA, foreach AdamW) and torch.compile at two sizes, two presets, 1 and 2
# threads: tokens/s and peak RSS. Not part of `bench`: the full run takes
# about 40 minutes on 2 cores (scripts/bench-peers.sh lists its knobs).
bench-peers: build
	scripts/bench-peers.sh

# One optimizer step of AdamW, SOAP and Muon (mid size), against
# torch.optim.AdamW, pytorch_optimizer.SOAP and torch.optim.Muon.
bench-optim: $(SHIM)
	scripts/bench-compare.sh ./train/ 'OptimizerStep' scripts/reference/bench_optim.py

# clm's Hub download + tokenization against datasets.load_dataset + the
# original's tokenizer map, on a local multi-shard parquet dataset.
bench-data: $(SHIM)
	$(GO) test ./data -run '^$$' -bench 'HubPrepare' -benchtime 1x -count 1

bench: bench-torch bench-model bench-train bench-optim bench-data

CLM := bin/clm

# The demo: a 4-layer SAS model on the local Python standard library, then its
# figures. Starts afresh in runs/demo each time.
demo: build
	rm -rf runs/demo
	$(CLM) -config experiments/tiny.toml -run-dir runs/demo
	$(CLM) plot -out runs/demo/figures runs/demo
	@echo "figures: runs/demo/figures/loss.png (and kurtosis, gains, max-median, entropy)"

# One target per figure of the papers: each trains its runs in
# runs/<experiment> (continuing a run folder that holds the same experiment;
# one that holds another, e.g. a smoke run, is refused with the differences)
# and draws figures/<target>/. ARGS passes extra flags to every run, e.g.
# make fig9 ARGS='-set train.precision=bf16', or ARGS=-fresh to move old runs aside.
# run_experiments,FIG,RUNS[,AFTER]: each run trained (or continued), then AFTER
# on it (a command taking the run folder), then the figures of all.
train_one = $(CLM) -config experiments/$(1).toml -run-dir runs/$(1) $(ARGS)
run_experiments = @set -e; for e in $(2); do $(call train_one,$$e); $(if $(3),$(3) runs/$$e;) done; \
	$(CLM) plot -out figures/$(1) $(addprefix runs/,$(2))

fig2: build      ## Pre-LN vs the simplified blocks (eval loss)
	$(call run_experiments,fig2,default skipless skipless-parallel)
fig4: build      ## identity vs trainable value/projection gains
	$(call run_experiments,fig4,skipless trainable-vp-gains)
fig5: build      ## SAS-P with and without normalisation
	$(call run_experiments,fig5,skipless-parallel skipless-parallel-nonorm)
fig9: build      ## SAS vs Pre-LN
	$(call run_experiments,fig9,default skipless)
fig10: build     ## SAS-P vs the parallel block
	$(call run_experiments,fig10,default-parallel skipless-parallel)
baselines: build ## every run of the original's baseline_comparison.sh
	$(call run_experiments,baselines,default value-skipinit skipless skipless-parallel skipless-parallel-nonorm default-parallel)
long: build      ## the original's train_long.sh (num_token_mult 6)
	$(call run_experiments,long,long-default long-skipless long-skipless-parallel)
op: build        ## the outlier-protected block vs Pre-LN (kurtosis)
	$(call run_experiments,op,default op)

# The outlier-features study (He et al., NeurIPS 2024): Pre-LN and the OP
# block, each with AdamW, SOAP and Muon; every run is trained (or resumed),
# quantised to int8 by `clm quant` (QUANT_ARGS passes its flags), and drawn:
# figures/of/of-kurtosis (outlier features over training) and of-quant (fp vs
# int8 perplexity). docs/experiments.md ("Outlier features and int8 quantisation") gives
# a small CPU run (six runs in a few minutes).
OF_RUNS := of-preln-adamw of-op-adamw of-preln-soap of-op-soap of-preln-muon of-op-muon
QUANT_ARGS ?=
of: build        ## the outlier-features study: kurtosis in training, and int8 quantisation
	$(call run_experiments,of,$(OF_RUNS),$(CLM) quant $(QUANT_ARGS))

# Sweeps (`clm sweep`, docs/experiments.md "Sweeps"): every point trained (or
# continued) in runs/sweeps/<sweep>/<point>, then summary.csv (mean ± sd over
# seeds) and figures/ there. ARGS passes -set overrides (or -list, -slurm).
fig2-seeds: build ## Fig. 2 with three seeds per block: mean ± sd, the seeds' spread
	$(CLM) sweep experiments/sweeps/fig2-seeds.toml $(ARGS)
lr-sweep: build   ## learning rate × Pre-LN/SAS-P × 2 seeds on the tiny model (CPU)
	$(CLM) sweep experiments/sweeps/lr-tiny.toml $(ARGS)

# Test binaries for scripts/device-check.sh on a GPU machine without Go.
DEVICE_PKGS ?= torch model train
device-bins: $(SHIM)
	@mkdir -p bin/device
	@for p in $(DEVICE_PKGS); do $(GO) test -c -o bin/device/$$p.test ./$$p || exit 1; done
	@$(GO) build -ldflags '$(LDFLAGS)' -o bin/device/clm ./cmd/clm
	@ls bin/device

clean:
	rm -rf build build-cuda bin
