package torch

/*
#include <stdlib.h>
#include "clm_torch.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// ReduceOp is how AllReduce combines the ranks' values.
type ReduceOp int

const (
	// ReduceOpSum leaves the elementwise sum over the ranks in every rank's
	// tensors.
	ReduceOpSum ReduceOp = C.CLM_REDUCE_SUM
	// ReduceOpAvg leaves the elementwise mean (the sum divided by the world
	// size; floating dtypes only), as DDP averages gradients.
	ReduceOpAvg ReduceOp = C.CLM_REDUCE_AVG
)

func (op ReduceOp) String() string {
	switch op {
	case ReduceOpSum:
		return "sum"
	case ReduceOpAvg:
		return "avg"
	}
	return fmt.Sprintf("ReduceOp(%d)", int(op))
}

// DefaultProcessGroupTimeout is the timeout of a process group whose options
// leave it zero: PyTorch's default for Gloo.
const DefaultProcessGroupTimeout = 30 * time.Minute

// ProcessGroupOptions says how to join a process group.
type ProcessGroupOptions struct {
	Rank       int    // this process's rank in [0, WorldSize)
	WorldSize  int    // the number of processes
	LocalRank  int    // rank on this machine (picks the CUDA device); informational
	MasterAddr string // where rank 0 hosts the rendezvous store
	MasterPort int    // its TCP port
	// Backend is "gloo" (CPU tensors; the default when empty) or "nccl"
	// (CUDA tensors, in shims built with CUDA and NCCL).
	Backend string
	// Timeout bounds joining and every collective; zero means
	// DefaultProcessGroupTimeout.
	Timeout time.Duration
}

// ProcessGroup is a set of processes that run collectives together, over
// c10d: rank 0 hosts a TCPStore at MasterAddr:MasterPort for the rendezvous,
// and a Gloo (CPU) or NCCL (CUDA) backend moves the data.
//
// Collectives are synchronous and in place: every rank must call the same
// collectives in the same order with tensors of the same shapes and dtypes.
// They are I/O and return errors as values: a peer that died, or one that
// does not join a collective within the timeout, gives an error (never a
// hang or an abort of the process). After a failed collective the group is
// unusable: every later collective returns the first failure. Close the
// group and end the process.
//
// Gloo picks its network interface from GLOO_SOCKET_IFNAME (a
// comma-separated list), else MasterAddr when it is a loopback address (a
// single-machine job), else the address of this machine's hostname.
//
// Methods may be called from several goroutines; collectives run one at a
// time.
type ProcessGroup struct {
	mu        sync.Mutex
	h         C.clm_pg
	rank      int
	size      int
	localRank int
	backend   string
}

// DistributedBackends returns the backends this build can create: "gloo"
// always, and "nccl" in CUDA builds with NCCL.
func DistributedBackends() []string {
	var out []string
	b := C.clm_dist_backends()
	if b&C.CLM_DIST_GLOO != 0 {
		out = append(out, "gloo")
	}
	if b&C.CLM_DIST_NCCL != 0 {
		out = append(out, "nccl")
	}
	return out
}

// NewProcessGroup joins a process group. It blocks until every rank has
// joined, or fails after the timeout.
func NewProcessGroup(o ProcessGroupOptions) (*ProcessGroup, error) {
	if o.Backend == "" {
		o.Backend = "gloo"
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultProcessGroupTimeout
	}
	switch {
	case o.WorldSize < 1:
		return nil, fmt.Errorf("torch: process group: world size %d must be at least 1", o.WorldSize)
	case o.Rank < 0 || o.Rank >= o.WorldSize:
		return nil, fmt.Errorf("torch: process group: rank %d outside [0, %d)", o.Rank, o.WorldSize)
	case o.MasterAddr == "":
		return nil, errors.New("torch: process group: empty master address")
	case o.MasterPort < 1 || o.MasterPort > 65535:
		return nil, fmt.Errorf("torch: process group: master port %d outside [1, 65535]", o.MasterPort)
	case o.Timeout < time.Millisecond:
		return nil, fmt.Errorf("torch: process group: timeout %v must be at least 1ms", o.Timeout)
	}
	addr := C.CString(o.MasterAddr)
	defer C.free(unsafe.Pointer(addr))
	be := C.CString(o.Backend)
	defer C.free(unsafe.Pointer(be))
	var cerr *C.char
	h := C.clm_pg_new(C.int(o.Rank), C.int(o.WorldSize), addr, C.int(o.MasterPort), be,
		C.int64_t(o.Timeout.Milliseconds()), &cerr)
	if e := takeErr("process group", cerr); e != nil {
		// The shim prefixes its own operation name.
		e.Msg, _ = strings.CutPrefix(e.Msg, "process group: ")
		return nil, e
	}
	if h == nil {
		return nil, &Error{Op: "process group", Msg: "no handle and no error"}
	}
	return &ProcessGroup{h: h, rank: o.Rank, size: o.WorldSize, localRank: o.LocalRank, backend: o.Backend}, nil
}

// ProcessGroupFromEnv joins the process group described by torchrun's
// environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and (optional,
// defaulting to RANK) LOCAL_RANK. An error names the variable that is
// missing or invalid.
func ProcessGroupFromEnv(backend string, timeout time.Duration) (*ProcessGroup, error) {
	o, err := ProcessGroupOptionsFromEnv()
	if err != nil {
		return nil, err
	}
	o.Backend = backend
	o.Timeout = timeout
	return NewProcessGroup(o)
}

// ProcessGroupOptionsFromEnv reads torchrun's variables (see
// ProcessGroupFromEnv) without joining.
func ProcessGroupOptionsFromEnv() (ProcessGroupOptions, error) {
	var o ProcessGroupOptions
	num := func(name string, min, max int, optional bool) (int, bool, error) {
		s, ok := os.LookupEnv(name)
		if !ok || s == "" {
			if optional {
				return 0, false, nil
			}
			return 0, false, fmt.Errorf("torch: process group: environment variable %s is not set (launch with torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)", name)
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < min || v > max {
			return 0, false, fmt.Errorf("torch: process group: environment variable %s=%q is not an integer in [%d, %d]", name, s, min, max)
		}
		return v, true, nil
	}
	var err error
	if o.WorldSize, _, err = num("WORLD_SIZE", 1, 1<<20, false); err != nil {
		return o, err
	}
	if o.Rank, _, err = num("RANK", 0, o.WorldSize-1, false); err != nil {
		return o, err
	}
	var ok bool
	if o.LocalRank, ok, err = num("LOCAL_RANK", 0, o.WorldSize-1, true); err != nil {
		return o, err
	} else if !ok {
		o.LocalRank = o.Rank
	}
	o.MasterAddr = os.Getenv("MASTER_ADDR")
	if o.MasterAddr == "" {
		return o, errors.New("torch: process group: environment variable MASTER_ADDR is not set (launch with torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)")
	}
	if o.MasterPort, _, err = num("MASTER_PORT", 1, 65535, false); err != nil {
		return o, err
	}
	return o, nil
}

// Rank returns this process's rank.
func (pg *ProcessGroup) Rank() int { return pg.rank }

// Size returns the number of processes in the group.
func (pg *ProcessGroup) Size() int { return pg.size }

// LocalRank returns the rank on this machine given at creation (LOCAL_RANK
// for ProcessGroupFromEnv).
func (pg *ProcessGroup) LocalRank() int { return pg.localRank }

// Backend returns "gloo" or "nccl".
func (pg *ProcessGroup) Backend() string { return pg.backend }

// handle returns the live handle, or an error once closed. Call with pg.mu held.
func (pg *ProcessGroup) handle(op string) (C.clm_pg, error) {
	if pg == nil || pg.h == nil {
		return nil, &Error{Op: op, Msg: "process group is closed"}
	}
	return pg.h, nil
}

// collective runs f (a shim call returning an error string) under the lock.
func (pg *ProcessGroup) collective(op string, f func(h C.clm_pg) *C.char) error {
	if pg == nil {
		return &Error{Op: op, Msg: "nil process group"}
	}
	pg.mu.Lock()
	defer pg.mu.Unlock()
	h, err := pg.handle(op)
	if err != nil {
		return err
	}
	if e := takeErr(op, f(h)); e != nil {
		e.Msg, _ = strings.CutPrefix(e.Msg, op+": ")
		return e
	}
	return nil
}

// AllReduce combines ts elementwise over the ranks with op, in place: every
// rank ends with the same values. The tensors of each (device, dtype) travel
// as one flattened buffer.
func (pg *ProcessGroup) AllReduce(ts []*Tensor, op ReduceOp) error {
	if len(ts) == 0 {
		return nil
	}
	p, n := handles(ts)
	return pg.collective("allreduce", func(h C.clm_pg) *C.char { return C.clm_pg_allreduce(h, p, n, C.int(op)) })
}

// Broadcast copies root's ts into every other rank's ts, in place.
func (pg *ProcessGroup) Broadcast(ts []*Tensor, root int) error {
	if len(ts) == 0 {
		return nil
	}
	p, n := handles(ts)
	return pg.collective("broadcast", func(h C.clm_pg) *C.char { return C.clm_pg_broadcast(h, p, n, C.int(root)) })
}

// Barrier returns once every rank has entered it.
func (pg *ProcessGroup) Barrier() error {
	return pg.collective("barrier", func(h C.clm_pg) *C.char { return C.clm_pg_barrier(h) })
}

// Close leaves the group and frees its resources (rank 0's store goes with
// it, so rank 0 should close last when the others still need it). It is
// safe to call more than once.
func (pg *ProcessGroup) Close() error {
	if pg == nil {
		return nil
	}
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.h != nil {
		C.clm_pg_free(pg.h)
		pg.h = nil
	}
	return nil
}
