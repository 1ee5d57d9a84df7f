package sweep

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// Outcome is how a point's process ended.
type Outcome struct {
	// Code is its exit status (-1: killed by a signal).
	Code int
	// Signal is the signal that killed it, if one did.
	Signal string
	// Stopped: the sweep was asked to stop (SIGINT, SIGTERM) while the
	// point ran, and passed the request on.
	Stopped bool
}

// Interrupted reports whether the point stopped on request, resumable:
// it was stopped, or it exited as clm does on Ctrl-C (130).
func (o Outcome) Interrupted() bool { return o.Stopped || o.Code == 130 }

// String says how the process ended: "exit 1", "killed by signal: killed".
func (o Outcome) String() string {
	if o.Signal != "" {
		return "killed by signal: " + o.Signal
	}
	return "exit " + strconv.Itoa(o.Code)
}

// RunChild runs argv (a `clm -config …` of one point) to its end, its
// output on stdout and stderr. The child has a process group of its own,
// so that a Ctrl-C at the terminal reaches the sweep alone: each signal
// from stop is passed on to the child as one SIGINT (the first makes it
// save a checkpoint and stop, a second quit at once), never two for one.
// When the sweep dies without a word (SIGKILL), the kernel sends the
// child SIGTERM, which it takes as a Ctrl-C.
func RunChild(argv []string, stdout, stderr io.Writer, stop <-chan os.Signal) (Outcome, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return Outcome{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var o Outcome
	for {
		select {
		case <-stop:
			o.Stopped = true
			cmd.Process.Signal(syscall.SIGINT)
		case err := <-done:
			var ee *exec.ExitError
			switch {
			case err == nil:
			case errors.As(err, &ee):
				o.Code = ee.ExitCode()
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					o.Signal = ws.Signal().String()
				}
			default:
				return o, err
			}
			return o, nil
		}
	}
}
