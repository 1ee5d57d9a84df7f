// Package plot draws the figures of "Simplifying Transformer Blocks" (He &
// Hofmann, ICLR 2024) and "Understanding and Minimising Outlier Features in
// Transformer Training" (He et al., NeurIPS 2024) from clm run folders:
// loss curves, the kurtosis of neuron RMS per layer, the trained gains, the
// max/median activation ratio and the attention entropy over training.
//
// A run folder holds metrics.jsonl, the run log that package runlog
// defines (one JSON object per line with a "kind" of "train", "eval" or
// "stats"), and config.toml, whose name labels the run. The
// package reads those files only; it does not depend on libtorch.
//
// figures.go builds the papers' figures from runs; layout.go is the
// drawing toolkit they share (series, panels, figures, ticks, colours,
// saving).
package plot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"

	"clm/runlog"
)

// MetricsFile and ConfigFile are the names of a run folder's files.
const (
	MetricsFile = runlog.MetricsFile
	ConfigFile  = "config.toml"
)

// Run is the parsed content of one run folder: its log (records of each
// kind sorted by step, the last line of a step logged twice winning, and
// the count of malformed lines) and its label.
type Run struct {
	// Dir is the run folder.
	Dir string
	// Label names the run: config.toml's name, else the folder's base
	// name.
	Label string
	runlog.Log
	// Quants are the results of the run's quant.json (clm quant), if any.
	Quants []*runlog.Quant
}

// ReadRun reads dir/metrics.jsonl and dir/config.toml. A missing folder or
// metrics file is an error naming the path; malformed lines are skipped
// and counted in Run.Skipped.
func ReadRun(dir string) (*Run, error) {
	if st, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("plot: run folder %s does not exist", dir)
	} else if err != nil {
		return nil, fmt.Errorf("plot: run folder: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("plot: run folder %s is not a directory", dir)
	}
	path := filepath.Join(dir, MetricsFile)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("plot: %s: no metrics file in the run folder", path)
		}
		return nil, fmt.Errorf("plot: %w", err)
	}
	defer f.Close()
	l, err := runlog.Read(f)
	if err != nil {
		return nil, fmt.Errorf("plot: %s: %w", path, err)
	}
	q, err := runlog.ReadQuants(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("plot: %w", err)
	}
	return &Run{Dir: dir, Label: runLabel(dir), Log: *l, Quants: q}, nil
}

// runLabel returns config.toml's name (the experiment's), else the folder
// name.
func runLabel(dir string) string {
	var cfg struct {
		Name string `toml:"name"`
	}
	if _, err := toml.DecodeFile(filepath.Join(dir, ConfigFile), &cfg); err == nil && cfg.Name != "" {
		return cfg.Name
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return filepath.Base(abs)
}
