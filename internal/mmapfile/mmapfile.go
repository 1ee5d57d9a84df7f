// Package mmapfile maps files read-only into memory (token shards,
// safetensors weights), reading them instead where mmap is unavailable or
// the file is not a regular one.
package mmapfile

import (
	"fmt"
	"os"
)

// Open returns the contents of the named file and a function that releases
// them. Regular files of at least minMap bytes are mapped read-only; others
// (and every file on systems without mmap) are read into memory. Errors
// name the file.
func Open(name string, minMap int64) ([]byte, func() error, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() || size < max(minMap, 1) || !canMap {
		b, err := os.ReadFile(name)
		return b, func() error { return nil }, err
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: file too large to map (%d bytes)", name, size)
	}
	b, err := mmap(f, int(size))
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", name, err)
	}
	return b, func() error { return munmap(b) }, nil
}
