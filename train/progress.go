package train

import (
	"fmt"
	"io"
	"time"

	"clm/internal/progress"
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

// NewProgress shows a run on w as clm shows long work (internal/progress):
// a bar with step, loss, lr, tokens/s and ETA on a terminal, and otherwise
// timestamped lines, never quiet for longer than quietLimit.
func NewProgress(w io.Writer) Progress {
	return &steps{d: progress.New(w, progress.Options{Every: quietLimit, Stamp: true})}
}

// quietLimit is the longest a run without a terminal stays silent (Slurm
// logs, tee, docker logs): a paper-size step on a CPU or a long evaluation
// must not look like a hung job.
const quietLimit = 30 * time.Second

// steps is a run's Progress on a progress.Display: on a terminal the bar's
// description carries the loss or the phase; without one, a line of the
// step and ETA, or of the phase, whenever the run has been quiet.
type steps struct {
	d           *progress.Display
	start       time.Time
	from, total int
	phaseStart  time.Time
}

func (p *steps) Start(total, from int) {
	p.start, p.from, p.total = p.d.Now(), from, total
	p.d.Start("train", int64(total), int64(from), true)
	if !p.d.Terminal() {
		p.d.Line(fmt.Sprintf("training: step %d of %d", from, total))
	}
}

func (p *steps) Update(step int, loss, lr, tps float64) {
	p.phaseStart = time.Time{}
	if p.d.Terminal() {
		p.d.Describe(fmt.Sprintf("loss %.4f lr %.2e %.0f tok/s", loss, lr, tps))
		p.d.Set(int64(step))
		return
	}
	p.d.Status(func() string {
		line := fmt.Sprintf("step %d/%d  loss %.4f  lr %.3g  %.0f tok/s", step, p.total, loss, lr, tps)
		if done := step - p.from; done > 0 && step < p.total {
			per := p.d.Now().Sub(p.start) / time.Duration(done)
			line += "  ETA " + (per * time.Duration(p.total-step)).Round(time.Second).String()
		}
		return line
	})
}

func (p *steps) Phase(what string, done, total int) {
	if total > 0 {
		what += fmt.Sprintf(" %d/%d", done, total)
	}
	if p.d.Terminal() {
		p.d.Describe(what)
		return
	}
	if p.phaseStart.IsZero() {
		p.phaseStart = p.d.Now()
	}
	p.d.Status(func() string {
		return fmt.Sprintf("%s (%s so far)", what, p.d.Now().Sub(p.phaseStart).Round(time.Second))
	})
}

func (p *steps) Log(line string) { p.d.Line(line) }

func (p *steps) Finish() { p.d.Finish() }
