// Package fault kills the process at a named point of its work, for the
// tests that check what a run folder looks like after a crash at that
// point. It is driven by the environment variable CLM_FAULT="point@n": the
// n-th time (1-based) the process reaches that point it sends itself
// SIGKILL, which nothing can catch or clean up after. Without the variable
// every call is a no-op costing one comparison.
package fault

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	once   sync.Once
	point  string
	target int
	mu     sync.Mutex
	counts = map[string]int{}
)

func parse() {
	spec := os.Getenv("CLM_FAULT")
	name, n, ok := strings.Cut(spec, "@")
	if !ok {
		name, n = spec, "1"
	}
	if k, err := strconv.Atoi(n); err == nil && k > 0 {
		point, target = name, k
	}
}

// Hit reports whether this call of the named point is the one CLM_FAULT
// names; the caller then tears what it is writing and calls Kill.
func Hit(name string) bool {
	once.Do(parse)
	if point == "" || name != point {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	counts[name]++
	return counts[name] == target
}

// Point kills the process if this call is the one CLM_FAULT names.
func Point(name string) {
	if Hit(name) {
		Kill()
	}
}

// Kill sends the process SIGKILL and waits for it.
func Kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
