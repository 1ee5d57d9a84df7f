// Package progress is how every clm command shows long work: on a terminal
// a bar redrawn in place, and every second, so that its clock runs through
// a long step; anywhere else (a pipe, a log file, docker logs, Slurm) plain
// lines, one whenever the work has been quiet for a while, so that nothing
// looks hung. The data pipeline, the Hub client and the training loop each
// say what their lines hold; how they are shown is this package's.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Display shows one piece of work at a time on w. Its methods are safe for
// concurrent use.
type Display struct {
	mu    sync.Mutex
	w     io.Writer
	term  bool
	stamp bool          // lines begin with the time of day
	every time.Duration // lines: the longest quiet
	now   func() time.Time

	bar  *progressbar.ProgressBar
	stop chan struct{}
	last time.Time // when the last line was written
}

// Options are a Display's line settings.
type Options struct {
	// Every is the longest a Display without a terminal stays quiet
	// (Quiet turns true after it).
	Every time.Duration
	// Stamp begins every line with the time of day (15:04:05).
	Stamp bool
	// Now is the clock (time.Now when nil); tests pass their own.
	Now func() time.Time
	// Lines forces lines, even on a terminal.
	Lines bool
}

// New is a Display on w: a bar when w is a terminal, lines otherwise.
func New(w io.Writer, o Options) *Display {
	d := &Display{w: w, term: !o.Lines && IsTerminal(w), stamp: o.Stamp, every: o.Every, now: o.Now}
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

// Terminal reports whether the Display draws a bar.
func (d *Display) Terminal() bool { return d.term }

// Start begins work of total units (at from) described by desc: the bar on
// a terminal, with a count and the time left; without one nothing is
// written, and the quiet counts from now. clear removes the bar when the
// work finishes.
func (d *Display) Start(desc string, total, from int64, clear bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.term {
		d.last = d.now() // the quiet counts from the start
		return
	}
	opts := []progressbar.Option{progressbar.OptionSetWriter(d.w), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100 * time.Millisecond)}
	if clear {
		opts = append(opts, progressbar.OptionClearOnFinish(), progressbar.OptionSetWidth(30))
	} else {
		w := d.w
		opts = append(opts, progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
	}
	d.bar = progressbar.NewOptions64(total, opts...)
	_ = d.bar.Set64(from)
	d.stop = make(chan struct{})
	go d.tick(d.stop, d.bar)
}

// tick redraws the bar every second until stop closes.
func (d *Display) tick(stop chan struct{}, bar *progressbar.ProgressBar) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			d.mu.Lock()
			_ = bar.RenderBlank()
			d.mu.Unlock()
		}
	}
}

// Add advances the bar by n units.
func (d *Display) Add(n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bar != nil {
		_ = d.bar.Add64(n)
	}
}

// Set puts the bar at n units.
func (d *Display) Set(n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bar != nil {
		_ = d.bar.Set64(n)
	}
}

// Describe replaces the bar's description and redraws it.
func (d *Display) Describe(desc string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bar != nil {
		d.bar.Describe(desc)
		_ = d.bar.RenderBlank()
	}
}

// Line writes one line now, above the bar on a terminal.
func (d *Display) Line(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.line(s)
}

// Status writes line() when the Display is Quiet (see there), as one
// step: of two callers at the same moment, one writes.
func (d *Display) Status(line func() string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.quiet() {
		d.line(line())
	}
}

func (d *Display) line(s string) {
	if d.bar != nil {
		_ = d.bar.Clear()
	}
	d.last = d.now()
	if d.stamp {
		s = d.last.Format("15:04:05") + " " + s
	}
	fmt.Fprintln(d.w, s)
	if d.bar != nil {
		_ = d.bar.RenderBlank()
	}
}

// Quiet reports whether a Display without a terminal has written no line
// for Every: the moment for a line of where the work is. A bar is never
// quiet.
func (d *Display) Quiet() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.quiet()
}

func (d *Display) quiet() bool { return !d.term && d.now().Sub(d.last) >= d.every }

// Now is the Display's clock.
func (d *Display) Now() time.Time { return d.now() }

// Finish ends the work: the bar completes (or is cleared) and stops
// redrawing.
func (d *Display) Finish() {
	d.mu.Lock()
	stop, bar := d.stop, d.bar
	d.stop, d.bar = nil, nil
	d.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	if bar != nil {
		d.mu.Lock()
		_ = bar.Finish()
		d.mu.Unlock()
	}
}
