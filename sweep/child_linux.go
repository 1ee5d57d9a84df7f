package sweep

import "syscall"

// childAttr puts a point's process in a process group of its own and has
// the kernel send it SIGTERM if the sweep dies (the sweep runs points
// from one locked OS thread, whose end is the process's).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
