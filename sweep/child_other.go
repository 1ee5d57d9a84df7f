//go:build !linux

package sweep

import "syscall"

// childAttr puts a point's process in a process group of its own (only
// Linux can tie its life to the sweep's).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
