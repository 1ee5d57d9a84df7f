package sweep

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockFile is the sweep folder's lock: held by the `clm sweep` that runs
// its points one after another, released by the kernel however it ends.
const lockFile = ".sweep.lock"

// Lock is a held sweep folder lock.
type Lock struct{ f *os.File }

// LockFolder takes the lock of a sweep folder (created if needed), so
// that two sequential sweeps never work through the same points at once.
// When another process holds it, the error names it.
func LockFolder(folder string) (*Lock, error) {
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return nil, fmt.Errorf("sweep folder: %w", err)
	}
	path := filepath.Join(folder, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sweep folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			return nil, fmt.Errorf("sweep folder %s is in use by process %s; wait for that sweep or stop it", folder, strings.TrimSpace(string(b)))
		}
		return nil, fmt.Errorf("sweep folder %s: lock: %w", folder, err)
	}
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() { l.f.Close() }
