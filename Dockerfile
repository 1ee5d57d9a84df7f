# clm in a container. The same Makefile targets as on a workstation build the
# shim against the image's libtorch and the Go binary; the runtime stage keeps
# only what `clm` needs, with the experiments. The paper's data comes from
# the Hugging Face Hub into /work/cache/huggingface (the image's Python
# standard library is the offline corpus of `make demo`'s tiny.toml).
#
#   docker build -t clm .                                   # CUDA (default)
#   docker build --build-arg VARIANT=cpu -t clm:cpu .       # CPU only
#   docker run --gpus all -v $PWD/runs:/work/runs clm -config experiments/skipless.toml
#
# See README "Docker" for data and tokenizer mounts.

ARG VARIANT=cuda
ARG GO_VERSION=1.26

# ---- bases ------------------------------------------------------------------
# CUDA: PyTorch's devel image has libtorch (in its Python), nvcc and cuDNN,
# which CMake's find_package(Torch) needs for a CUDA build.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-devel AS base-cuda
# CPU: a slim Python with PyTorch from pip's configured index (pass a
# CPU-only wheel index with --build-arg PIP_INDEX_URL=... to keep it small).
FROM python:3.12-slim AS base-cpu
ARG PIP_INDEX_URL
RUN pip install --no-cache-dir torch

FROM golang:${GO_VERSION}-bookworm AS go

# ---- build ------------------------------------------------------------------
FROM base-${VARIANT} AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake make g++ git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH CGO_ENABLED=1
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# LIBTORCH: link against the image's PyTorch; no reference virtualenv inside.
RUN LIBTORCH=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)') make setup build \
    && mkdir -p /out/lib && cp build/libclmtorch.so /out/lib/ && cp bin/clm /out/

# ---- runtime ------------------------------------------------------------------
# The runtime keeps the base image (its libtorch and CUDA libraries) and adds
# the binary, the shim and the experiments.
FROM base-${VARIANT} AS runtime
COPY --from=build /out/clm /usr/local/bin/clm
# The binary's rpath points at /src/build (where it was linked).
COPY --from=build /out/lib/libclmtorch.so /src/build/libclmtorch.so
WORKDIR /work
COPY experiments ./experiments
ENV CLM_CACHE=/work/cache HF_HOME=/work/cache/huggingface
VOLUME ["/work/runs", "/work/cache"]
ENTRYPOINT ["clm"]
CMD ["help"]
