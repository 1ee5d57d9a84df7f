package runlog

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"math"
	"slices"

	"clm/internal/jsonnum"
)

// Log is the parsed content of a metrics.jsonl. The records of each kind
// are sorted by step; when a step occurs more than once (a resumed run logs
// some steps again), the last line wins.
type Log struct {
	// Train, Eval and Stats are the records of each kind.
	Train []Train
	Eval  []Eval
	Stats []Stats
	// Skipped counts the malformed lines (not JSON, no step, an unknown
	// layout for their kind: a train line without a loss, an eval line
	// without an eval loss, a stats line without statistics);
	// FirstSkipped is the 1-based line number of the first (0 when none).
	// Lines of unknown kinds and blank lines are ignored without counting.
	Skipped, FirstSkipped int
}

// line is the union of the keys of every kind of line. Pointers tell an
// absent key (or null) from a value.
type line struct {
	Kind          string                     `json:"kind"`
	Step          *int64                     `json:"step"`
	Time          *jsonnum.Float             `json:"time"`
	Loss          *jsonnum.Float             `json:"loss"`
	LR            *jsonnum.Float             `json:"lr"`
	GradNorm      *jsonnum.Float             `json:"grad_norm"`
	TokensPerS    *jsonnum.Float             `json:"tokens_per_s"`
	Tokens        *jsonnum.Float             `json:"tokens"`
	LossScale     *jsonnum.Float             `json:"loss_scale"`
	PeakMemory    *jsonnum.Float             `json:"peak_memory"`
	EvalLoss      *jsonnum.Float             `json:"eval_loss"`
	EvalSequences *int                       `json:"eval_sequences"`
	Layers        []json.RawMessage          `json:"layers"`
	AttnEntropy   []jsonnum.Float            `json:"attn_entropy"`
	Gains         map[string][]jsonnum.Float `json:"gains"`
}

// opt returns the value, or NaN when the key was absent or null.
func opt(p *jsonnum.Float) float64 {
	if p == nil {
		return math.NaN()
	}
	return float64(*p)
}

// Read parses a log; only a read error is an error, malformed lines are
// counted in Log.Skipped.
func Read(rd io.Reader) (*Log, error) {
	br := bufio.NewReaderSize(rd, 1<<16)
	l := &Log{}
	records := map[string]map[int64]Record{KindTrain: {}, KindEval: {}, KindStats: {}}
	for n := 1; ; n++ {
		b, err := br.ReadBytes('\n') // no line-length limit
		if len(bytes.TrimSpace(b)) > 0 {
			r, ok := parseLine(b)
			switch {
			case !ok:
				l.Skipped++
				if l.FirstSkipped == 0 {
					l.FirstSkipped = n
				}
			case r != nil:
				records[r.Kind()][r.step()] = r
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	l.Train = sorted[Train](records[KindTrain])
	l.Eval = sorted[Eval](records[KindEval])
	l.Stats = sorted[Stats](records[KindStats])
	return l, nil
}

// sorted returns the records of one kind ordered by step.
func sorted[R Record](byStep map[int64]Record) []R {
	out := make([]R, 0, len(byStep))
	for _, r := range byStep {
		out = append(out, r.(R))
	}
	slices.SortFunc(out, func(a, b R) int { return cmp.Compare(a.step(), b.step()) })
	return out
}

// parseLine returns the record of one line; it reports false for a
// malformed line, and a nil record for a line of another kind.
func parseLine(b []byte) (Record, bool) {
	var j line
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, false
	}
	switch j.Kind {
	case KindTrain, KindEval, KindStats:
	case "":
		return nil, false
	default:
		return nil, true // another kind of record: not ours
	}
	if j.Step == nil {
		return nil, false
	}
	switch j.Kind {
	case KindTrain:
		if j.Loss == nil {
			return nil, false
		}
		return j.train(), true
	case KindEval:
		if j.EvalLoss == nil {
			return nil, false
		}
		r := Eval{Step: *j.Step, Time: opt(j.Time), EvalLoss: opt(j.EvalLoss)}
		if j.EvalSequences != nil {
			r.EvalSequences = *j.EvalSequences
		}
		return r, true
	}
	return j.stats()
}

// train returns the Train record of a train line.
func (j *line) train() Train {
	r := Train{Step: *j.Step, Time: opt(j.Time), Loss: opt(j.Loss), LR: opt(j.LR),
		GradNorm: opt(j.GradNorm), TokensPerSec: opt(j.TokensPerS)}
	if t := opt(j.Tokens); !math.IsNaN(t) {
		r.Tokens = int64(t)
	}
	if p := opt(j.PeakMemory); !math.IsNaN(p) {
		r.PeakMemory = int64(p)
	}
	if s := opt(j.LossScale); !math.IsNaN(s) {
		r.LossScale = s
	}
	return r
}

// stats returns the Stats record of a stats line; it reports false for a
// line without statistics or with a malformed layer.
func (j *line) stats() (Record, bool) {
	if j.Layers == nil && j.AttnEntropy == nil && j.Gains == nil {
		return nil, false
	}
	r := Stats{Step: *j.Step, Time: opt(j.Time)}
	if j.AttnEntropy != nil {
		r.AttnEntropy = jsonnum.Floats(j.AttnEntropy)
	}
	if j.Layers != nil {
		r.Layers = make([]LayerStats, len(j.Layers))
		for i, raw := range j.Layers {
			var err error
			if r.Layers[i], err = decodeLayer(raw, i); err != nil {
				return nil, false
			}
		}
	}
	if j.Gains != nil {
		r.Gains = make(map[string][]float64, len(j.Gains))
		for name, v := range j.Gains {
			r.Gains[name] = jsonnum.Floats(v)
		}
	}
	return r, true
}
