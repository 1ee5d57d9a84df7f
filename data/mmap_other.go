//go:build !unix

package data

import "os"

// mmapFile reads the file into memory where mmap is not available.
func mmapFile(path string) ([]byte, func() error, error) {
	b, err := os.ReadFile(path)
	return b, func() error { return nil }, err
}
