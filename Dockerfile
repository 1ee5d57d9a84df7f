# clm in a container: `docker run --gpus all clm -config experiments/skipless.toml`.
#
#   make docker-build                  # CUDA image clm (VARIANT=cuda), the default
#   make docker-build VARIANT=cpu      # CPU image clm:cpu
#   make docker-check                  # both, and the checks CI runs on them
#
# Both variants start from one plain base (a slim Debian with Python, whose
# standard library is the offline corpus of experiments/tiny.toml) and take
# libtorch from the PyTorch wheel pinned in scripts/requirements.txt, the one
# every test and benchmark uses. The CUDA image ships the wheel's CUDA
# libraries (runtime, cuBLAS, cuDNN, NCCL, ...), so the host needs only the
# NVIDIA driver that `--gpus all` brings in; clm's CUDA kernels are compiled
# by nvcc from NVIDIA's PyPI wheels. The CPU image ships libtorch_cpu and the
# two small CUDA libraries it links, nothing else of CUDA. The runtime stage
# has no compiler; `clm version` runs in it, so an image whose binary cannot
# load its libraries is never built.
#
# Base images are build arguments: where Docker Hub is not reachable,
# scripts/docker-bases.sh assembles stand-ins from Debian packages.

ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS go

# ---- toolchain: compilers, Go, the module cache, the pinned libtorch ----------
FROM ${BASE_IMAGE} AS toolchain
# The base's Debian release pins these.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ make \
    && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH CGO_ENABLED=1 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
# A pip that installs wheels into folders (--target), whatever Python the base has.
RUN python3 -m venv /opt/pip
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
ARG VARIANT=cuda
COPY scripts/requirements.txt scripts/cuda-toolkit.sh scripts/
COPY scripts/docker/libtorch.sh scripts/docker/
# nvcc's wheels (VARIANT=cuda) go here, outside what the runtime copies.
ENV CUDA_TOOLKIT_DIR=/opt/cuda-toolkit
RUN scripts/docker/libtorch.sh "$VARIANT" /opt/clm/site

# ---- shim: its own layer, rebuilt only when torch/csrc or CMakeLists.txt change --
FROM toolchain AS shim
ARG VARIANT=cuda
COPY CMakeLists.txt ./
COPY torch/csrc torch/csrc
COPY scripts/build-shim.sh scripts/
RUN scripts/build-shim.sh "$VARIANT" /opt/clm/site/torch/share/cmake build

# ---- build: clm, staged in /out with the shim and the libraries it loads ------------
FROM shim AS build
COPY . .
ARG CLM_COMMIT=""
ARG CLM_MODIFIED=""
RUN --mount=type=cache,id=clm-go-build,target=/root/.cache/go-build \
    scripts/docker/build.sh "$VARIANT" /opt/clm/site /out

# ---- runtime: clm, its libraries and the experiments; no compiler -------------
FROM ${BASE_IMAGE} AS runtime
ARG VARIANT=cuda
ARG CLM_VERSION=dev
ARG CLM_COMMIT=""
LABEL org.opencontainers.image.title="clm" \
      org.opencontainers.image.description="GPT-2-style models with simplified and outlier-protected transformer blocks (${VARIANT})" \
      org.opencontainers.image.version="${CLM_VERSION}" \
      org.opencontainers.image.revision="${CLM_COMMIT}"
COPY --from=build /out/ /
COPY experiments /work/experiments
# Runs and caches live in volumes; any --user may write them when they are not
# host mounts (a host mount keeps the host's owner and mode).
RUN mkdir -p /work/runs /work/cache && chmod 1777 /work/runs /work/cache
ENV PATH=/opt/clm/bin:$PATH CLM_CACHE=/work/cache HF_HOME=/work/cache/huggingface
WORKDIR /work
# The image works, or it is not built: the binary loads its shim and libtorch.
RUN ["clm", "version"]
USER 1000:1000
VOLUME ["/work/runs", "/work/cache"]
ENTRYPOINT ["clm"]
CMD ["help"]
