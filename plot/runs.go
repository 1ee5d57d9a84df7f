// Package plot draws the figures of "Simplifying Transformer Blocks" (He &
// Hofmann, ICLR 2024) and "Understanding and Minimising Outlier Features in
// Transformer Training" (He et al., NeurIPS 2024) from clm run folders:
// loss curves, the kurtosis of neuron RMS per layer, the trained gains, the
// max/median activation ratio and the attention entropy over training.
//
// A run folder holds metrics.jsonl, one JSON object per line with a "kind"
// of "train", "eval" or "stats" (the statistics of train.OutlierStats,
// train.AttentionEntropy and train.Gains), and config.toml, whose
// [experiment] name labels the run. The package reads those files only; it
// does not depend on libtorch.
package plot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"

	"clm/internal/jsonnum"
)

// MetricsFile and ConfigFile are the names of a run folder's files.
const (
	MetricsFile = "metrics.jsonl"
	ConfigFile  = "config.toml"
)

// Run is the parsed content of one run folder. Points of each kind are
// sorted by step; when a step occurs more than once (a resumed run logs
// some steps again), the last line wins.
type Run struct {
	// Dir is the run folder.
	Dir string
	// Label names the run: config.toml's [experiment] name, else the
	// folder's base name.
	Label string
	// Train, Eval and Stats are the records of each kind.
	Train []TrainPoint
	Eval  []EvalPoint
	Stats []StatsPoint
	// Skipped counts the malformed lines of metrics.jsonl (not JSON, no
	// step, an unknown layout for their kind); FirstSkipped is the 1-based
	// line number of the first (0 when none). Lines of unknown kinds and
	// blank lines are ignored without counting.
	Skipped, FirstSkipped int
}

// TrainPoint is a "train" record. Fields absent from the line are NaN.
type TrainPoint struct {
	Step                                   int64
	Time, Loss, LR, GradNorm, TokensPerSec float64
	Tokens                                 float64
}

// EvalPoint is an "eval" record.
type EvalPoint struct {
	Step     int64
	Time     float64
	EvalLoss float64
}

// LayerStats are the statistics of one hidden state, as train.LayerStats
// writes them (same JSON names; null reads as NaN).
type LayerStats struct {
	Layer            int
	XRMS             float64
	Kurtosis         float64
	KurtosisMinusOne float64
	FeatCorrRMS      float64
	BatchCorrMean    float64
	BatchCorrRMS     float64
	MaxMedianRatio   float64
}

// StatsPoint is a "stats" record.
type StatsPoint struct {
	Step        int64
	Time        float64
	Layers      []LayerStats
	AttnEntropy []float64
	// Gains maps a gain's parameter name to its values (one per head for
	// the attention-matrix gains).
	Gains map[string][]float64
}

// opt returns the value, or NaN when the field was absent.
func opt(p *jsonnum.Float) float64 {
	if p == nil {
		return math.NaN()
	}
	return float64(*p)
}

type layerJSON struct {
	Layer            *int           `json:"layer"`
	XRMS             *jsonnum.Float `json:"x_rms"`
	Kurtosis         *jsonnum.Float `json:"kurtosis"`
	KurtosisMinusOne *jsonnum.Float `json:"kurtosis_minus_one"`
	FeatCorrRMS      *jsonnum.Float `json:"feat_corr_rms"`
	BatchCorrMean    *jsonnum.Float `json:"batch_corr_mean"`
	BatchCorrRMS     *jsonnum.Float `json:"batch_corr_rms"`
	MaxMedianRatio   *jsonnum.Float `json:"max_median_ratio"`
}

type recordJSON struct {
	Kind        string                     `json:"kind"`
	Step        *int64                     `json:"step"`
	Time        *jsonnum.Float             `json:"time"`
	Loss        *jsonnum.Float             `json:"loss"`
	LR          *jsonnum.Float             `json:"lr"`
	GradNorm    *jsonnum.Float             `json:"grad_norm"`
	TokensPerS  *jsonnum.Float             `json:"tokens_per_s"`
	Tokens      *jsonnum.Float             `json:"tokens"`
	EvalLoss    *jsonnum.Float             `json:"eval_loss"`
	Layers      []layerJSON                `json:"layers"`
	AttnEntropy []jsonnum.Float            `json:"attn_entropy"`
	Gains       map[string][]jsonnum.Float `json:"gains"`
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
	r := &Run{Dir: dir, Label: runLabel(dir)}
	if err := r.parse(f); err != nil {
		return nil, fmt.Errorf("plot: %s: %w", path, err)
	}
	return r, nil
}

// runLabel returns config.toml's [experiment] name, else the folder name.
func runLabel(dir string) string {
	var cfg struct {
		Experiment struct {
			Name string `toml:"name"`
		} `toml:"experiment"`
	}
	if _, err := toml.DecodeFile(filepath.Join(dir, ConfigFile), &cfg); err == nil && cfg.Experiment.Name != "" {
		return cfg.Experiment.Name
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return filepath.Base(abs)
}

func (r *Run) parse(rd io.Reader) error {
	br := bufio.NewReaderSize(rd, 1<<16)
	train := map[int64]TrainPoint{}
	eval := map[int64]EvalPoint{}
	stats := map[int64]StatsPoint{}
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n') // no line-length limit
		if len(bytes.TrimSpace(b)) > 0 {
			if !r.record(b, train, eval, stats) {
				r.Skipped++
				if r.FirstSkipped == 0 {
					r.FirstSkipped = line
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	for _, p := range train {
		r.Train = append(r.Train, p)
	}
	for _, p := range eval {
		r.Eval = append(r.Eval, p)
	}
	for _, p := range stats {
		r.Stats = append(r.Stats, p)
	}
	sort.Slice(r.Train, func(i, j int) bool { return r.Train[i].Step < r.Train[j].Step })
	sort.Slice(r.Eval, func(i, j int) bool { return r.Eval[i].Step < r.Eval[j].Step })
	sort.Slice(r.Stats, func(i, j int) bool { return r.Stats[i].Step < r.Stats[j].Step })
	return nil
}

// record files one line; it reports false for a malformed line.
func (r *Run) record(b []byte, train map[int64]TrainPoint, eval map[int64]EvalPoint, stats map[int64]StatsPoint) bool {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return false
	}
	switch j.Kind {
	case "train", "eval", "stats":
	case "":
		return false
	default:
		return true // another kind of record: not ours to plot
	}
	if j.Step == nil {
		return false
	}
	step := *j.Step
	switch j.Kind {
	case "train":
		if j.Loss == nil {
			return false
		}
		train[step] = TrainPoint{Step: step, Time: opt(j.Time), Loss: opt(j.Loss), LR: opt(j.LR),
			GradNorm: opt(j.GradNorm), TokensPerSec: opt(j.TokensPerS), Tokens: opt(j.Tokens)}
	case "eval":
		if j.EvalLoss == nil {
			return false
		}
		eval[step] = EvalPoint{Step: step, Time: opt(j.Time), EvalLoss: opt(j.EvalLoss)}
	case "stats":
		if j.Layers == nil && j.AttnEntropy == nil && j.Gains == nil {
			return false
		}
		p := StatsPoint{Step: step, Time: opt(j.Time), AttnEntropy: jsonnum.Floats(j.AttnEntropy), Gains: map[string][]float64{}}
		for i, l := range j.Layers {
			layer := i
			if l.Layer != nil {
				layer = *l.Layer
			}
			p.Layers = append(p.Layers, LayerStats{Layer: layer, XRMS: opt(l.XRMS), Kurtosis: opt(l.Kurtosis),
				KurtosisMinusOne: opt(l.KurtosisMinusOne), FeatCorrRMS: opt(l.FeatCorrRMS),
				BatchCorrMean: opt(l.BatchCorrMean), BatchCorrRMS: opt(l.BatchCorrRMS), MaxMedianRatio: opt(l.MaxMedianRatio)})
		}
		for name, v := range j.Gains {
			p.Gains[name] = jsonnum.Floats(v)
		}
		stats[step] = p
	}
	return true
}
