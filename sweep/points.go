package sweep

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Point is one run of a sweep: one value of each axis and one seed.
type Point struct {
	// Index is the point's place in the sweep's order (0-based): the
	// first axis varies slowest, the seed fastest.
	Index int
	// Name is the point's run folder inside the sweep folder,
	// "lr=0.003,preset=skipless-parallel,seed=1".
	Name string
	// Values are the point's value of each axis, in the axes' order.
	Values []any
	// Seed is the point's seed (when the sweep has seeds).
	Seed    int64
	HasSeed bool
	// Group names the point without its seed: the points of a group
	// differ only in their seed ("all" for a sweep of seeds alone).
	Group string
	// Sets are the experiment overrides that make the point: its grid
	// values, its seed and the sweep's fixed overrides.
	Sets map[string]any
}

// Dir is the point's run folder.
func (s *Sweep) Dir(p Point) string { return filepath.Join(s.Folder, p.Name) }

// Points are the sweep's points, the cartesian product of its axes and
// seeds in a stable order. Two points whose names would be the same after
// making them safe for a folder name are an error.
func (s *Sweep) Points() ([]Point, error) {
	seeds := s.Seeds
	if seeds == nil {
		seeds = []int64{0}
	}
	var out []Point
	idx := make([]int, len(s.Axes))
	for {
		for _, seed := range seeds {
			p := Point{Index: len(out), Sets: map[string]any{}, Seed: seed, HasSeed: s.Seeds != nil}
			var parts []string
			for i, a := range s.Axes {
				v := a.Values[idx[i]]
				p.Values = append(p.Values, v)
				p.Sets[a.Key] = v
				parts = append(parts, a.Short+"="+ValueLabel(v))
			}
			p.Group = folderName(strings.Join(parts, ","))
			if len(parts) == 0 {
				p.Group = "all"
			}
			if p.HasSeed {
				p.Sets[SeedKey] = seed
				parts = append(parts, "seed="+strconv.FormatInt(seed, 10))
			}
			for k, v := range s.Set {
				p.Sets[k] = v
			}
			p.Name = folderName(strings.Join(parts, ","))
			out = append(out, p)
		}
		if !next(idx, s.Axes) {
			break
		}
	}
	seen := map[string]int{}
	for _, p := range out {
		if j, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("%s: points %d and %d would share the folder %q: make their values differ in letters or digits", s.Path, j, p.Index, p.Name)
		}
		seen[p.Name] = p.Index
	}
	return out, nil
}

// next advances the odometer idx over the axes' values (the last axis
// fastest); false after the last combination.
func next(idx []int, axes []Axis) bool {
	for i := len(idx) - 1; i >= 0; i-- {
		if idx[i]++; idx[i] < len(axes[i].Values) {
			return true
		}
		idx[i] = 0
	}
	return false
}

// ValueLabel is a value as a point's name and the tables show it: numbers
// as Go's shortest form that reads back the same (0.003, 1e-05, 12), lists
// joined by "+".
func ValueLabel(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = ValueLabel(e)
		}
		return strings.Join(parts, "+")
	}
	return fmt.Sprint(v)
}

// unsafe are the characters a point's folder name does not keep.
var unsafe = regexp.MustCompile(`[^A-Za-z0-9._+=,-]+`)

// maxName keeps a folder name within what file systems allow (255 bytes).
const maxName = 200

// folderName makes name safe for a folder: runs of other characters become
// "_"; a name too long is cut and ends in a hash of the whole.
func folderName(name string) string {
	safe := strings.Trim(unsafe.ReplaceAllString(name, "_"), ".")
	if safe == "" {
		safe = "point"
	}
	if len(safe) > maxName {
		sum := sha256.Sum256([]byte(name))
		safe = fmt.Sprintf("%s~%x", safe[:maxName-17], sum[:8])
	}
	return safe
}

// TOMLValue is v as a TOML value, as `clm -set key=VALUE` reads it back to
// the same value and type ("0.003", "\"skipless\"", "[\".py\"]").
func TOMLValue(v any) (string, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{"v": v}); err != nil {
		return "", err
	}
	s := strings.TrimSpace(buf.String())
	rest, ok := strings.CutPrefix(s, "v = ")
	if !ok {
		return "", fmt.Errorf("%v cannot be a -set value", v)
	}
	return rest, nil
}

// SetArgs are the point's overrides as `-set key=VALUE` arguments, in key
// order.
func (p Point) SetArgs() ([]string, error) {
	keys := make([]string, 0, len(p.Sets))
	for k := range p.Sets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		v, err := TOMLValue(p.Sets[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out = append(out, "-set", k+"="+v)
	}
	return out, nil
}
