//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package safetensors

// mapFile reads the whole named file; memory mapping is not used on this
// system.
func mapFile(name string) ([]byte, func() error, error) { return readAll(name) }
