package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockFile is the run folder's lock: flock held by the training process for
// its whole life and released by the kernel when it exits, however it
// exits. Its content (pid, host, start time) only serves messages.
const lockFile = ".lock"

// RunLock is a held run-folder lock.
type RunLock struct {
	f       *os.File
	dir     string
	created bool // the folder did not exist before the lock
}

// LockRun takes the exclusive lock of run folder dir, creating the folder
// if needed. When another process holds it, the error names that process.
// A lock left by a dead process is free: the kernel dropped it.
func LockRun(dir string) (*RunLock, error) {
	_, statErr := os.Stat(dir)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run folder %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("run folder %s is in use by %s; wait for it to finish, stop it, or pick another -run-dir", dir, lockHolder(path))
		}
		return nil, fmt.Errorf("run folder %s: lock %s: %w", dir, path, err)
	}
	host, _ := os.Hostname()
	info := fmt.Sprintf("pid %d\nhost %s\nsince %s\n", os.Getpid(), host, time.Now().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(info), 0)
	}
	return &RunLock{f: f, dir: dir, created: created}, nil
}

// lockHolder describes the process named in a lock file.
func lockHolder(path string) string {
	b, _ := os.ReadFile(path)
	fields := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			fields[k] = v
		}
	}
	pid, err := strconv.Atoi(fields["pid"])
	if err != nil {
		return "another process (" + path + ")"
	}
	s := fmt.Sprintf("process %d", pid)
	if h := fields["host"]; h != "" {
		s += " on " + h
	}
	if t, err := time.Parse(time.RFC3339, fields["since"]); err == nil {
		s += " since " + t.Format("2006-01-02 15:04:05")
	}
	return s
}

// Release drops the lock. When the folder was created by LockRun and
// holds nothing else, it is removed, so a start that failed leaves no trace.
func (l *RunLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	if l.created {
		if ents, err := os.ReadDir(l.dir); err == nil && len(ents) == 1 && ents[0].Name() == lockFile {
			os.Remove(filepath.Join(l.dir, lockFile))
			os.Remove(l.dir)
		}
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
