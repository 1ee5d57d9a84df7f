// Package sweep is clm's grid of runs: a sweep file (a base experiment, a
// grid of experiment keys to lists of values, seeds, fixed overrides and a
// folder), its points (the cartesian product, each named by its values and
// trained into its own run folder inside the sweep's folder), the record
// of the resolved sweep that keeps one folder to one sweep, the summary of
// the points' run logs (per point, and mean ± sd over seeds), the data of
// the figures of a metric against each swept key, and the Slurm array job
// that runs the points on a cluster.
//
// It reads run logs through runlog and knows nothing of libtorch or of how
// a point is trained: cmd/clm resolves each point's experiment (train.Load)
// and runs it as `clm -config BASE -run-dir POINT -set …`.
package sweep

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"clm/internal/editdist"
)

// SeedKey is the experiment key that seeds a run (initialisation, data
// order, dropout): train.Options.Seed. The seeds of a sweep set it.
const SeedKey = "train.seed"

// File is the name of the resolved sweep kept in a sweep folder.
const File = "sweep.json"

// Axis is one swept key and its values, in the sweep file's order.
type Axis struct {
	// Key is the experiment key, "train.lr".
	Key string
	// Short names the key in point names and tables: its last part
	// ("lr"), or the whole key where two axes would share one.
	Short string
	// Values are TOML values (float64, int64, string, bool, []any).
	Values []any
}

// Sweep is a parsed sweep file.
type Sweep struct {
	// Path is the sweep file.
	Path string
	// Base is the base experiment file, resolved against the sweep file's
	// folder.
	Base string
	// Folder holds one run folder per point (default: beside the sweep
	// file, named after it).
	Folder string
	// Axes are the [grid] keys, in the file's order.
	Axes []Axis
	// Seeds are the values of SeedKey; nil: the base experiment's own seed
	// (no seed axis).
	Seeds []int64
	// Set are the fixed overrides of every point ([set], then -set flags).
	Set map[string]any
}

// sweepDoc is the layout of a sweep file.
type sweepDoc struct {
	Base   string         `toml:"base"`
	Folder string         `toml:"folder"`
	Seeds  any            `toml:"seeds"`
	Grid   map[string]any `toml:"grid"`
	Set    map[string]any `toml:"set"`
}

// maxPoints caps a grid, so that a mistyped list cannot queue years of runs.
const maxPoints = 10000

// Load reads a sweep file; keys are the keys an experiment may set (every
// [grid] and [set] key must be one of them). Errors name the file and,
// where it has one, the line.
func Load(path string, keys []string) (*Sweep, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	s, err := Parse(path, src, keys)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.Base); err != nil {
		return nil, fmt.Errorf("%s: base: %v", at(path, src, "base"), err)
	}
	return s, nil
}

// Parse is Load for file contents.
func Parse(path string, src []byte, keys []string) (*Sweep, error) {
	var doc sweepDoc
	md, err := toml.Decode(string(src), &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	for _, k := range md.Undecoded() {
		if k[0] != "grid" && k[0] != "set" {
			return nil, fmt.Errorf("%s: unknown key %q (a sweep has base, folder, seeds, [grid] and [set])", at(path, src, k[len(k)-1]), k.String())
		}
	}
	if doc.Base == "" {
		return nil, fmt.Errorf("%s: base: which experiment? (base = \"experiments/x.toml\", relative to the sweep file)", path)
	}
	dir := filepath.Dir(path)
	s := &Sweep{Path: path, Base: filepath.Join(dir, doc.Base), Set: map[string]any{}}
	s.Folder = filepath.Join(dir, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	if doc.Folder != "" {
		s.Folder = filepath.Join(dir, doc.Folder)
	}
	if s.Seeds, err = parseSeeds(doc.Seeds); err != nil {
		return nil, fmt.Errorf("%s: seeds: %v", at(path, src, "seeds"), err)
	}
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
	}
	if s.Seeds != nil && !known[SeedKey] && keys != nil {
		return nil, fmt.Errorf("%s: seeds: the experiment has no key %s", path, SeedKey)
	}
	if err := s.parseGrid(src, md, flatten("", doc.Grid), known); err != nil {
		return nil, err
	}
	for k, v := range flatten("", doc.Set) {
		if err := s.checkKey(src, "set", k, known); err != nil {
			return nil, err
		}
		s.Set[k] = v
	}
	return s, s.check()
}

// parseGrid takes the [grid] keys in the file's order.
func (s *Sweep) parseGrid(src []byte, md toml.MetaData, grid map[string]any, known map[string]bool) error {
	for _, k := range md.Keys() {
		if len(k) < 2 || k[0] != "grid" {
			continue
		}
		key := strings.Join(k[1:], ".")
		v, ok := grid[key]
		if !ok {
			continue // a table on the way to a key
		}
		if err := s.checkKey(src, "grid", key, known); err != nil {
			return err
		}
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			return fmt.Errorf("%s: grid %q: want a list of values, e.g. [1e-3, 3e-3]", at(s.Path, src, key), key)
		}
		for i, a := range list {
			for _, b := range list[:i] {
				if fmt.Sprint(a) == fmt.Sprint(b) {
					return fmt.Errorf("%s: grid %q: %v is listed twice", at(s.Path, src, key), key, a)
				}
			}
		}
		s.Axes = append(s.Axes, Axis{Key: key, Values: list})
	}
	return nil
}

// checkKey refuses a [grid] or [set] key that no experiment has, and the
// keys the sweep sets itself.
func (s *Sweep) checkKey(src []byte, table, key string, known map[string]bool) error {
	where := at(s.Path, src, key)
	switch {
	case key == "name":
		return fmt.Errorf("%s: %s %q: the sweep names its points itself", where, table, key)
	case key == SeedKey && table == "grid":
		return fmt.Errorf("%s: grid %q: give the seeds as seeds = N (or a list)", where, key)
	case len(known) > 0 && !known[key]:
		return fmt.Errorf("%s: %s %q: not a key of the experiment%s", where, table, key, nearest(key, known))
	}
	return nil
}

// check refuses what would make an empty, ambiguous or runaway sweep.
func (s *Sweep) check() error {
	if len(s.Axes) == 0 && s.Seeds == nil {
		return fmt.Errorf("%s: nothing to sweep: give a [grid] or seeds", s.Path)
	}
	if _, both := s.Set[SeedKey]; both && s.Seeds != nil {
		return fmt.Errorf("%s: set %q and seeds both give the seed", s.Path, SeedKey)
	}
	n := max(1, len(s.Seeds))
	for _, a := range s.Axes {
		if _, both := s.Set[a.Key]; both {
			return fmt.Errorf("%s: %q is both in [grid] and in [set]", s.Path, a.Key)
		}
		n *= len(a.Values)
		if n > maxPoints {
			return fmt.Errorf("%s: the grid has more than %d points", s.Path, maxPoints)
		}
	}
	s.shortNames()
	return nil
}

// shortNames names each axis by its key's last part, or by the whole key
// where two axes (or an axis and the seed) would share it.
func (s *Sweep) shortNames() {
	count := map[string]int{}
	if s.Seeds != nil {
		count["seed"]++
	}
	last := func(k string) string { return k[strings.LastIndex(k, ".")+1:] }
	for _, a := range s.Axes {
		count[last(a.Key)]++
	}
	for i := range s.Axes {
		s.Axes[i].Short = last(s.Axes[i].Key)
		if count[s.Axes[i].Short] > 1 {
			s.Axes[i].Short = s.Axes[i].Key
		}
	}
}

// WithSets adds overrides given outside the sweep file (-set flags) to
// every point; a grid key cannot be overridden.
func (s *Sweep) WithSets(sets map[string]any) error {
	keys := make([]string, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.ContainsFunc(s.Axes, func(a Axis) bool { return a.Key == k }) || (k == SeedKey && s.Seeds != nil) {
			return fmt.Errorf("-set %s: %s sweeps over it", k, s.Path)
		}
		s.Set[k] = sets[k]
	}
	return nil
}

// parseSeeds reads seeds = N (0 … N−1) or seeds = [a, b, …].
func parseSeeds(v any) ([]int64, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case int64:
		if x < 1 || x > maxPoints {
			return nil, fmt.Errorf("%d: want a count from 1 to %d, or a list", x, maxPoints)
		}
		out := make([]int64, x)
		for i := range out {
			out[i] = int64(i)
		}
		return out, nil
	case []any:
		var out []int64
		for _, e := range x {
			n, ok := e.(int64)
			if !ok {
				return nil, fmt.Errorf("%v is not an integer", e)
			}
			if slices.Contains(out, n) {
				return nil, fmt.Errorf("seed %d is listed twice", n)
			}
			out = append(out, n)
		}
		if len(out) == 0 {
			return nil, errors.New("an empty list")
		}
		return out, nil
	}
	return nil, fmt.Errorf("%v: want a count (seeds = 3: seeds 0, 1, 2) or a list of integers", v)
}

// flatten turns nested tables into dotted keys: {"train": {"lr": x}} and
// {"train.lr": x} are both "train.lr".
func flatten(prefix string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			for kk, vv := range flatten(key, sub) {
				out[kk] = vv
			}
			continue
		}
		out[key] = v
	}
	return out
}

// lineOf is the 1-based line of the first assignment to key: whole,
// quoted or bare, or by its last part (under a table); 0 when none is
// found.
func lineOf(src []byte, key string) int {
	last := key[strings.LastIndex(key, ".")+1:]
	for _, form := range []string{`"` + key + `"`, `'` + key + `'`, key, last, `"` + last + `"`} {
		for i, l := range strings.Split(string(src), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(l), form); ok && strings.HasPrefix(strings.TrimSpace(rest), "=") {
				return i + 1
			}
		}
	}
	return 0
}

// at is "file:line" of key in the sweep file, or "file" when its line is
// not found.
func at(path string, src []byte, key string) string {
	if n := lineOf(src, key); n > 0 {
		return fmt.Sprintf("%s:%d", path, n)
	}
	return path
}

// nearest is ` (did you mean "train.lr"?)` for the known key closest to
// key by edit distance, when close enough to be a typo; else "".
func nearest(key string, known map[string]bool) string {
	best, bestD := "", 1<<30
	for k := range known {
		if d := editdist.Levenshtein(key, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(key)/4) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}
