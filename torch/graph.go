package torch

/*
#include "clm_torch.h"
*/
import "C"

import (
	"fmt"
	"runtime"
)

// CUDAGraph is CUDA work captured once and replayed as one launch
// (at::cuda::CUDAGraph). The tensors the captured work created live in the
// graph's private memory pool: those the capturer kept (its outputs) hold
// the values of the latest replay, and inputs are tensors created before
// the capture, whose contents the caller overwrites before each replay.
type CUDAGraph struct {
	h   C.clm_graph
	dev Device
}

// CaptureCUDAGraph records the CUDA work that f launches on dev, without
// running it. f runs with the calling goroutine locked to its OS thread and
// a side stream current (libtorch's current stream is per thread). It must
// not read values back to the host or synchronise, and must not create
// tensors it means to outlive the graph: CUDA refuses the first two while
// capturing (the capture then fails with an error), and the third come
// from the graph's pool. State that f creates lazily (optimizer moments,
// cuBLAS workspaces) must exist before the capture: run f's work eagerly a
// few times first, as PyTorch's documentation advises. An error from f
// (a *Error raised inside it) ends the capture and is returned.
func CaptureCUDAGraph(dev Device, f func()) (g *CUDAGraph, err error) {
	if !dev.IsCUDA() {
		return nil, fmt.Errorf("CUDA graph: capture needs a CUDA device, not %v", dev)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var h C.clm_graph
	if e := takeErr("cuda_graph_begin", C.clm_graph_begin(dev.c(), &h)); e != nil {
		return nil, e
	}
	defer func() {
		if g == nil {
			C.clm_graph_free(h) // ends the capture and restores the stream
		}
	}()
	if err := Try(f); err != nil {
		return nil, fmt.Errorf("CUDA graph capture: %w", err)
	}
	if e := takeErr("cuda_graph_end", C.clm_graph_end(h)); e != nil {
		C.clm_graph_free(h)
		h = nil
		return nil, e
	}
	return &CUDAGraph{h: h, dev: dev}, nil
}

// Replay launches the captured work on the current stream; it does not
// wait for it.
func (g *CUDAGraph) Replay() error {
	if g == nil || g.h == nil {
		return &Error{Op: "cuda_graph_replay", Msg: "graph is nil or closed"}
	}
	if e := takeErr("cuda_graph_replay", C.clm_graph_replay(g.h)); e != nil {
		return e
	}
	return nil
}

// Close frees the graph and returns its memory pool to the caching
// allocator (once the tensors kept from the capture are freed too). It is
// safe to call more than once.
func (g *CUDAGraph) Close() {
	if g != nil && g.h != nil {
		C.clm_graph_free(g.h)
		g.h = nil
	}
}
