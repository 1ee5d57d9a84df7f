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
	"sync"
	"time"

	"clm/internal/progress"
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
func IsTerminal(w io.Writer) bool { return progress.IsTerminal(w) }

// DefaultProgress shows a step on w as clm shows long work
// (internal/progress): a bar on a terminal, else a line of the units done
// every few seconds and one at the end of a step that took that long.
func DefaultProgress(w io.Writer) Progress {
	return &units{d: progress.New(w, progress.Options{Every: unitsEvery})}
}

// unitsEvery is how often a step without a terminal says how far it is,
// and how long one must take to say when it is done.
const unitsEvery = 5 * time.Second

// units is a Progress on a progress.Display.
type units struct {
	d           *progress.Display
	mu          sync.Mutex
	desc        string
	total, done int64
	start       time.Time
}

func (p *units) Start(desc string, total int64) {
	p.mu.Lock()
	p.desc, p.total, p.done, p.start = desc, total, 0, p.d.Now()
	p.mu.Unlock()
	p.d.Start(desc, total, 0, false)
}

func (p *units) Add(n int64) {
	p.d.Add(n)
	p.mu.Lock()
	p.done += n
	done := p.done
	p.mu.Unlock()
	p.d.Status(func() string {
		return fmt.Sprintf("%s: %d/%d (%.0f%%, %s)", p.desc, done, p.total, 100*float64(done)/float64(max(p.total, 1)),
			p.d.Now().Sub(p.start).Round(time.Second))
	})
}

func (p *units) Finish() {
	p.d.Finish()
	p.mu.Lock()
	took, line := p.d.Now().Sub(p.start), ""
	if !p.d.Terminal() && took >= unitsEvery {
		line = fmt.Sprintf("%s: done, %d in %s", p.desc, p.done, took.Round(time.Millisecond))
	}
	p.mu.Unlock()
	if line != "" {
		p.d.Line(line)
	}
}
