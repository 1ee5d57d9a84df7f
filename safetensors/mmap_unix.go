//go:build linux || darwin || freebsd || netbsd || openbsd

package safetensors

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the named file read-only and returns its contents and a
// function that unmaps them. Files too short to be valid are read instead.
func mapFile(name string) ([]byte, func() error, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	if !st.Mode().IsRegular() || size < 8 {
		return readAll(name)
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("safetensors: %s: file too large to map (%d bytes)", name, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: mmap %s: %w", name, err)
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
