// Package atomicfile replaces a file so that a crash at any moment leaves
// either the old content or the new, never a mix: the data goes to a
// temporary file in the same folder, is synced, and is renamed over the
// name, whose folder is then synced too.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with b (mode perm), durably.
func Write(path string, b []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if e := f.Sync(); err == nil {
		err = e
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Chmod(f.Name(), perm)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil { // not every system can sync a folder
		d.Sync()
		d.Close()
	}
	return nil
}
