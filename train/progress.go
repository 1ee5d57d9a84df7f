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
	// Finish ends the display.
	Finish()
}

type nopProgress struct{}

func (nopProgress) Start(int, int)                        {}
func (nopProgress) Update(int, float64, float64, float64) {}
func (nopProgress) Log(string)                            {}
func (nopProgress) Finish()                               {}

// NewProgress returns a bar when w is a terminal and plain lines otherwise.
func NewProgress(w io.Writer) Progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w}
}

// lineProgress prints the Log lines with a timestamp.
type lineProgress struct {
	w io.Writer
}

func (p *lineProgress) Start(total, from int) {
	fmt.Fprintf(p.w, "%s training: step %d of %d\n", time.Now().Format("15:04:05"), from, total)
}
func (p *lineProgress) Update(int, float64, float64, float64) {}
func (p *lineProgress) Log(line string) {
	fmt.Fprintf(p.w, "%s %s\n", time.Now().Format("15:04:05"), line)
}
func (p *lineProgress) Finish() {}

// barProgress draws a progress bar with step, loss, lr, tokens/s and ETA.
type barProgress struct {
	mu  sync.Mutex
	w   io.Writer
	bar *progressbar.ProgressBar
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
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Finish()
	fmt.Fprintln(p.w)
}
