package train

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress shows a run's advance: an interactive bar on a terminal, plain
// log lines elsewhere (docker logs, CI, files).
type Progress interface {
	// Start begins at step `from` of `total`.
	Start(total, from int)
	// Update reports the step just finished.
	Update(step int, loss, lr, tokensPerSec float64)
	// Log prints one line (log steps, evaluations, checkpoints).
	Log(line string)
	// Phase shows work between steps: what (an evaluation, a checkpoint)
	// and how far, done of total units (total 0: one unit).
	Phase(what string, done, total int)
	// Finish ends the display.
	Finish()
}

type nopProgress struct{}

func (nopProgress) Start(int, int)                        {}
func (nopProgress) Update(int, float64, float64, float64) {}
func (nopProgress) Log(string)                            {}
func (nopProgress) Phase(string, int, int)                {}
func (nopProgress) Finish()                               {}

// NewProgress returns a bar when w is a terminal and plain lines otherwise.
func NewProgress(w io.Writer) Progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w, every: quietLimit, now: time.Now}
}

// quietLimit is the longest a run without a terminal stays silent (Slurm
// logs, tee, docker logs): a paper-size step on a CPU or a long evaluation
// must not look like a hung job.
const quietLimit = 30 * time.Second

// lineProgress prints the Log lines with a timestamp, and a line of where
// the run is whenever it has been quiet for `every`.
type lineProgress struct {
	w     io.Writer
	every time.Duration
	now   func() time.Time

	start, last time.Time
	from, total int
	phaseStart  time.Time
}

func (p *lineProgress) Start(total, from int) {
	p.start, p.from, p.total = p.now(), from, total
	p.Log(fmt.Sprintf("training: step %d of %d", from, total))
}

func (p *lineProgress) Update(step int, loss, lr, tps float64) {
	p.phaseStart = time.Time{}
	if p.now().Sub(p.last) < p.every {
		return
	}
	line := fmt.Sprintf("step %d/%d  loss %.4f  lr %.3g  %.0f tok/s", step, p.total, loss, lr, tps)
	if done := step - p.from; done > 0 && step < p.total {
		per := p.now().Sub(p.start) / time.Duration(done)
		line += "  ETA " + (per * time.Duration(p.total-step)).Round(time.Second).String()
	}
	p.Log(line)
}

func (p *lineProgress) Phase(what string, done, total int) {
	if p.phaseStart.IsZero() {
		p.phaseStart = p.now()
	}
	if p.now().Sub(p.last) < p.every {
		return
	}
	line := what
	if total > 0 {
		line += fmt.Sprintf(" %d/%d", done, total)
	}
	p.Log(fmt.Sprintf("%s (%s so far)", line, p.now().Sub(p.phaseStart).Round(time.Second)))
}

func (p *lineProgress) Log(line string) {
	p.last = p.now()
	fmt.Fprintf(p.w, "%s %s\n", p.last.Format("15:04:05"), line)
}

func (p *lineProgress) Finish() {}

// barProgress draws a progress bar with step, loss, lr, tokens/s and ETA,
// redrawn every second so that its clock runs through long steps,
// evaluations and checkpoint writes.
type barProgress struct {
	mu   sync.Mutex
	w    io.Writer
	bar  *progressbar.ProgressBar
	stop chan struct{}
}

func (p *barProgress) Start(total, from int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("train"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
	)
	p.bar.Set(from)
	p.stop = make(chan struct{})
	go p.tick(p.stop, p.bar)
}

func (p *barProgress) tick(stop chan struct{}, bar *progressbar.ProgressBar) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.mu.Lock()
			bar.RenderBlank()
			p.mu.Unlock()
		}
	}
}

func (p *barProgress) Phase(what string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if total > 0 {
		what += fmt.Sprintf(" %d/%d", done, total)
	}
	p.bar.Describe(what)
	p.bar.RenderBlank()
}

func (p *barProgress) Update(step int, loss, lr, tps float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Describe(fmt.Sprintf("loss %.4f lr %.2e %.0f tok/s", loss, lr, tps))
	p.bar.Set(step)
}

func (p *barProgress) Log(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Clear()
	fmt.Fprintf(p.w, "%s %s\n", time.Now().Format("15:04:05"), line)
	p.bar.RenderBlank()
}

func (p *barProgress) Finish() {
	if p.stop != nil {
		close(p.stop)
		p.stop = nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Finish()
	fmt.Fprintln(p.w)
}
