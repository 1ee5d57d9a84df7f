// Package torch is clm's Go binding over libtorch: tensors, ops with
// autograd, an AdamW optimizer, devices, random generators and autocast.
// It knows nothing of GPT-2.
//
// # Ownership
//
// Every *Tensor owns one libtorch handle. A handle is freed by Tensor.Free or
// by the Scope that was innermost when the tensor was created:
//
//	s := torch.NewScope()
//	defer s.Close()          // frees every tensor created inside, except kept ones
//	loss := model.Loss(x, y) // intermediates belong to s
//	loss.Backward()
//	s.Keep(loss)             // hand loss to the enclosing scope (or to the caller)
//
// Tensors created outside any scope (parameters, optimizer state) are owned
// by the caller and must be freed explicitly. Freeing a tensor only drops a
// reference: autograd keeps what the graph still needs. LiveTensors reports
// the number of handles not yet freed; tests assert that it returns to its
// starting value. Finalizers are not used: GPU memory must be freed in time.
//
// Scopes form one process-wide stack. Open them from one goroutine at a time
// (the training goroutine); a goroutine that creates tensors while another's
// scope is open puts them in that scope.
//
// # Errors
//
// A libtorch error in an op (a shape mismatch, a bad dtype, a wrong device)
// is a programming error: the op panics with a *Error carrying libtorch's
// message without its C++ backtrace. Try turns such panics back into errors.
// Functions that touch files or devices return errors as values.
//
// # Threads
//
// Grad mode and autocast are thread-local in libtorch. NoGrad and Autocast
// pin the calling goroutine to its OS thread while they run; a goroutine
// that keeps either state across calls must lock its thread itself. Work
// that must be bit-reproducible runs on one locked OS thread too: a
// goroutine that moves between threads can get a matrix product one
// rounding apart, now and then (see torchtest.Guard).
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/csrc
#cgo LDFLAGS: -L${SRCDIR}/../build -Wl,-rpath,${SRCDIR}/../build -lclmtorch
#include <stdlib.h>
#include "clm_torch.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Error is an error reported by libtorch (or by the shim around it).
type Error struct {
	Op  string // the binding's operation, e.g. "matmul"
	Msg string // libtorch's message, without the C++ backtrace
}

func (e *Error) Error() string { return "torch: " + e.Op + ": " + e.Msg }

// IsOutOfMemory reports whether err is libtorch's failure to allocate
// memory: CUDA's "out of memory" or the CPU allocator's "not enough memory".
func IsOutOfMemory(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return strings.Contains(e.Msg, "out of memory") || strings.Contains(e.Msg, "not enough memory")
}

// Try runs f and returns the *Error that an op inside it panicked with, or
// nil. Scopes that f opened and left open when it panicked are closed
// (their tensors freed), so the caller's scopes carry on as if f had
// returned. Panics of other kinds propagate.
func Try(f func()) (err error) {
	entry := currentScope()
	defer func() {
		if r := recover(); r != nil {
			if te, ok := r.(*Error); ok {
				unwindScopes(entry)
				err = te
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

// takeErr converts a C error string (owned by us) to *Error and frees it.
func takeErr(op string, cerr *C.char) *Error {
	if cerr == nil {
		return nil
	}
	msg := strings.TrimSpace(C.GoString(cerr))
	C.clm_free_string(cerr)
	return &Error{Op: op, Msg: msg}
}

// check panics with the error of an op, if any.
func check(op string, cerr *C.char) {
	if e := takeErr(op, cerr); e != nil {
		panic(e)
	}
}

var live atomic.Int64

// LiveTensors returns the number of tensor handles created and not yet freed.
func LiveTensors() int64 { return live.Load() }

// Capabilities describes the libtorch the shim was built against (2.1 or
// later) and which version-dependent paths exist, e.g.
// "torch=2.15.0 cuda_build=0 cuda_available=0 autocast_device_api=1 ...".
func Capabilities() string {
	buf := make([]byte, 512)
	C.clm_capabilities((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
}

// Version returns the libtorch version, e.g. "2.15.0".
func Version() string {
	for _, f := range strings.Fields(Capabilities()) {
		if v, ok := strings.CutPrefix(f, "torch="); ok {
			return v
		}
	}
	return "unknown"
}

// SetNumThreads sets libtorch's intra-op thread count: for the calling OS
// thread and for every thread that has not run an op yet. (With OpenMP a
// thread that has run an op keeps its own count: call it before any
// libtorch work, and again on a runtime.LockOSThread'ed goroutine that
// must use it.)
func SetNumThreads(n int) error {
	if n < 1 {
		return fmt.Errorf("torch: thread count %d must be at least 1", n)
	}
	if e := takeErr("set_num_threads", C.clm_set_num_threads(C.int(n))); e != nil {
		return e
	}
	return nil
}

// NumThreads returns libtorch's intra-op thread count on the calling OS
// thread.
func NumThreads() int { return int(C.clm_get_num_threads()) }

// defaultThreads is libtorch's own count, read before anything sets one.
var defaultThreads = NumThreads()

// DefaultNumThreads returns libtorch's default intra-op thread count (what
// a process starts with, and what PyTorch uses unless told otherwise).
func DefaultNumThreads() int { return defaultThreads }

// ManualSeed seeds the CPU generator and every CUDA device's, as
// torch.manual_seed does.
func ManualSeed(seed uint64) {
	check("manual_seed", C.clm_manual_seed(C.uint64_t(seed)))
}

// RNGState returns a copy of the default generator state of dev as a uint8
// CPU tensor, for exact resume.
func RNGState(dev Device) (*Tensor, error) {
	r := C.clm_rng_state(dev.c())
	if e := takeErr("rng_state", r.err); e != nil {
		return nil, e
	}
	return newTensor(r.t), nil
}

// SetRNGState restores a state returned by RNGState.
func SetRNGState(dev Device, state *Tensor) error {
	if e := takeErr("set_rng_state", C.clm_set_rng_state(dev.c(), state.handle())); e != nil {
		return e
	}
	return nil
}
