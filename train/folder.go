package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"clm/model"
)

// operationalKeys may differ between a run folder's experiment and the one
// asked of it without making it another experiment: they say how the run is
// executed, logged, evaluated how often and saved, not what it computes.
// Every other key (the model, the optimizer and its schedule, batches,
// precision, seeds, the data, the eval set's size) changes the result.
var operationalKeys = map[string]bool{
	"name":                         true,
	"train.threads":                true,
	"train.cpu_matmul":             true,
	"train.device":                 true,
	"train.log_every":              true,
	"train.eval_every":             true,
	"train.save_every":             true,
	"train.eval_batch":             true,
	"train.fit_micro_batch":        true,
	"train.checkpoint_activations": true,
	"train.attention":              true,
	"train.fused_kernels":          true,
	"train.cuda_graphs":            true,
	"train.nan_check_every":        true,
	"train.dist_timeout":           true,
	"report.every":                 true,
	"report.outliers":              true,
	"report.entropy":               true,
	"report.gains":                 true,
}

// Differences lists the keys that change the result on which run, the
// experiment of a run folder, and asked, an experiment loaded to train
// into it, differ: "model.n_layer: 2 in the run, 18 asked". What the run
// derived from its data is no difference where asked leaves it to be
// derived: the trained tokenizer (data.tokenizer "") and the vocabulary
// (model.vocab_size unset).
func Differences(run, asked *Experiment) ([]string, error) {
	a, err := run.flat()
	if err != nil {
		return nil, err
	}
	b, err := asked.flat()
	if err != nil {
		return nil, err
	}
	if asked.Data.Tokenizer == "" {
		delete(a, "data.tokenizer")
		delete(b, "data.tokenizer")
	}
	if _, set := asked.ModelOverrides["vocab_size"]; !set {
		delete(a, "model.vocab_size")
		delete(b, "model.vocab_size")
	}
	if from := asked.Train.InitFrom; from != "" && (strings.HasPrefix(run.Train.InitFrom, filepath.Join(from, "checkpoints")+string(filepath.Separator)) || sameHubInit(from, run.Train.InitFrom)) {
		delete(a, "train.init_from") // the run folder asked, resolved to its checkpoint when the run started (a hub: model to its commit)
		delete(b, "train.init_from")
	}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diffs []string
	for k := range keys {
		if operationalKeys[k] || a[k] == b[k] {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s: %s in the run, %s asked", k, orNone(a[k]), orNone(b[k])))
	}
	sort.Strings(diffs)
	return diffs, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// flat is the resolved experiment as "section.key" → value (the model in
// full, [train.optim] as train.optim.*), for comparisons.
func (e *Experiment) flat() (map[string]string, error) {
	tree, err := tomlTable(struct {
		Model  model.Config  `toml:"model"`
		Train  Options       `toml:"train"`
		Data   DataOptions   `toml:"data"`
		Report ReportOptions `toml:"report"`
	}{e.Model, e.Train, e.Data, e.Report})
	if err != nil {
		return nil, err
	}
	out := map[string]string{"name": e.Name}
	flatten("", tree, out)
	return out, nil
}

func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
		return
	}
	out[prefix] = fmt.Sprint(v)
}

// RunConfig is the path of the experiment a run folder holds, resolved:
// DIR/config.toml (docs/run-folder.md).
func RunConfig(dir string) string { return filepath.Join(dir, "config.toml") }

// HasRun reports whether dir holds a run: its config.toml.
func HasRun(dir string) bool {
	_, err := os.Stat(RunConfig(dir))
	return err == nil
}

// CheckFolder compares the run in dir, if any, with the experiment asked of
// it. It returns nil when dir holds no run (start one), the run's experiment
// when it is the same as asked (continue it), and an error naming the
// differences and the ways out when it holds another.
func CheckFolder(dir string, asked *Experiment) (*Experiment, error) {
	if !HasRun(dir) {
		return nil, nil
	}
	run, err := Load(RunConfig(dir), nil)
	if err != nil {
		return nil, fmt.Errorf("run folder %s: %w", dir, err)
	}
	diffs, err := Differences(run, asked)
	if err != nil {
		return nil, err
	}
	if len(diffs) > 0 {
		return nil, &FolderMismatchError{Dir: dir, Diffs: diffs}
	}
	return run, nil
}

// adoptDerived takes from run, the same experiment, what run derived from
// its data and e leaves to be derived: the trained tokenizer and the
// vocabulary.
func (e *Experiment) adoptDerived(run *Experiment) {
	e.Train.InitFrom = run.Train.InitFrom
	if e.Data.Tokenizer == "" {
		e.Data.Tokenizer = run.Data.Tokenizer
	}
	if _, set := e.ModelOverrides["vocab_size"]; !set {
		e.Model.VocabSize = run.Model.VocabSize
	}
}

// FolderMismatchError: a run folder holds another experiment than the one
// asked of it.
type FolderMismatchError struct {
	Dir   string
	Diffs []string
}

func (e *FolderMismatchError) Error() string {
	return fmt.Sprintf("run folder %s holds another experiment (%s); continue that run as it was with `clm -resume %s`, "+
		"train this one into another folder with -run-dir, or move the old one aside with -fresh",
		e.Dir, strings.Join(e.Diffs, "; "), e.Dir)
}

// MoveAside renames run folder dir to dir.old-<time> (never deleting it) and
// returns the new name. It refuses while another process trains in it.
func MoveAside(dir string) (string, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	l, err := LockRun(dir)
	if err != nil {
		return "", err
	}
	defer l.Release()
	aside := dir + ".old-" + time.Now().Format("20060102-150405")
	for i := 2; ; i++ {
		if _, err := os.Stat(aside); errors.Is(err, os.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s.old-%s-%d", dir, time.Now().Format("20060102-150405"), i)
	}
	if err := os.Rename(dir, aside); err != nil {
		return "", fmt.Errorf("-fresh: %w", err)
	}
	return aside, nil
}
