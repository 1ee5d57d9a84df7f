// Package data turns a code corpus into the token chunks that training reads,
// as the original (He & Hofmann 2024, CodeParrot setting) does: documents
// shuffled with a seed, num_token_mult x 100000 taken for training and 2000
// for validation, each tokenized and cut into consecutive full chunks of
// ContextLength tokens (no packing across documents). Chunks are cached once
// in checksummed binary shards read through mmap; a Batcher serves
// deterministic shuffled micro-batches with an exactly resumable cursor.
//
// Subpackages: data/bpe (the Hugging Face-exact tokenizer and trainer) and
// data/corpus (the corpus readers). Nothing here depends on torch.
package data

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress reports the progress of a long step. Implementations must be safe
// for concurrent Add calls.
type Progress interface {
	// Start begins a step of total units (bytes, documents, merges).
	Start(desc string, total int64)
	// Add records n more units done.
	Add(n int64)
	// Finish ends the step.
	Finish()
}

// NopProgress reports nothing.
type NopProgress struct{}

func (NopProgress) Start(string, int64) {}
func (NopProgress) Add(int64)           {}
func (NopProgress) Finish()             {}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// DefaultProgress returns a progress bar on w when w is a terminal, else a
// reporter that writes a log line every few seconds.
func DefaultProgress(w io.Writer) Progress {
	if IsTerminal(w) {
		return &barProgress{w: w}
	}
	return &logProgress{w: w, every: 5 * time.Second}
}

type barProgress struct {
	w   io.Writer
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func (p *barProgress) Start(desc string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }))
}

func (p *barProgress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Add64(n)
	}
}

func (p *barProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}

type logProgress struct {
	w     io.Writer
	every time.Duration
	mu    sync.Mutex
	desc  string
	total int64
	done  int64
	start time.Time
	last  time.Time
}

func (p *logProgress) Start(desc string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.desc, p.total, p.done = desc, total, 0
	p.start, p.last = time.Now(), time.Now()
}

func (p *logProgress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if time.Since(p.last) >= p.every {
		p.last = time.Now()
		fmt.Fprintf(p.w, "%s: %d/%d (%.0f%%, %s)\n", p.desc, p.done, p.total, 100*float64(p.done)/float64(max(p.total, 1)), time.Since(p.start).Round(time.Second))
	}
}

func (p *logProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.start) >= p.every {
		fmt.Fprintf(p.w, "%s: done, %d in %s\n", p.desc, p.done, time.Since(p.start).Round(time.Millisecond))
	}
}
