//go:build !unix

package mmapfile

import (
	"errors"
	"os"
)

const canMap = false

func mmap(*os.File, int) ([]byte, error) { return nil, errors.New("mmap is not available") }

func munmap([]byte) error { return nil }
