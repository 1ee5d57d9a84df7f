package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"clm/internal/atomicfile"
)

// Record is the resolved sweep a sweep folder keeps in File: every point
// with its overrides and its experiment as train resolved it. A later run
// of the sweep is compared with it, so that one folder never mixes two
// sweeps.
type Record struct {
	// Sweep is the sweep file the folder was made from, Base its base
	// experiment (as given then).
	Sweep string `json:"sweep"`
	Base  string `json:"base"`
	// Points in the sweep's order.
	Points []RecordPoint `json:"points"`
}

// RecordPoint is one point of a Record.
type RecordPoint struct {
	Name string `json:"name"`
	// Set are the point's overrides as TOML values ("train.lr": "0.003").
	Set map[string]string `json:"set"`
	// Experiment is the point's resolved experiment (TOML).
	Experiment string `json:"experiment"`
}

// NewRecord is the record of the points of s; experiments are their
// resolved experiments, by point name.
func NewRecord(s *Sweep, points []Point, experiments map[string]string) (*Record, error) {
	r := &Record{Sweep: s.Path, Base: s.Base}
	for _, p := range points {
		rp := RecordPoint{Name: p.Name, Set: map[string]string{}, Experiment: experiments[p.Name]}
		for k, v := range p.Sets {
			tv, err := TOMLValue(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", s.Path, k, err)
			}
			rp.Set[k] = tv
		}
		r.Points = append(r.Points, rp)
	}
	return r, nil
}

// ReadRecord reads the record of a sweep folder; nil without error when
// the folder has none (a new sweep).
func ReadRecord(folder string) (*Record, error) {
	path := filepath.Join(folder, File)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep folder: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("sweep folder: %s is not a sweep record: %v", path, err)
	}
	return &r, nil
}

// Write writes the record into folder (created if needed), atomically.
func (r *Record) Write(folder string) error {
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return fmt.Errorf("sweep folder: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(folder, File), append(b, '\n'), 0o644)
}

// Differ lists the keys that change the result in which two resolved
// experiments differ ("train.lr: 0.001 in the run, 0.003 asked"); keys
// that only say how a run executes (threads, device, logging) are no
// difference.
type Differ func(recorded, now string) ([]string, error)

// Reconcile compares the record a sweep folder holds (nil: none) with the
// sweep as it is now and returns the names of the points the folder does
// not have yet (a grown grid: they run too). A recorded point that the
// sweep no longer has, or whose experiment changed, is an error: the
// folder would mix two sweeps.
func Reconcile(folder string, recorded, now *Record, differ Differ) (added []string, err error) {
	if recorded == nil {
		for _, p := range now.Points {
			added = append(added, p.Name)
		}
		return added, nil
	}
	byName := map[string]RecordPoint{}
	for _, p := range now.Points {
		byName[p.Name] = p
	}
	ways := fmt.Sprintf("undo the change, or give the sweep another folder (folder = … or -folder); %s is the record", filepath.Join(folder, File))
	for _, old := range recorded.Points {
		p, ok := byName[old.Name]
		if !ok {
			return nil, fmt.Errorf("%s: the sweep folder %s holds point %s, which the sweep no longer has: %s", now.Sweep, folder, old.Name, ways)
		}
		diffs, err := differ(old.Experiment, p.Experiment)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(folder, File), err)
		}
		if len(diffs) > 0 {
			d := strings.ReplaceAll(strings.Join(diffs, "; "), " in the run,", " in the folder,")
			return nil, fmt.Errorf("%s: point %s changed since the sweep folder %s was made (%s): %s",
				now.Sweep, old.Name, folder, strings.ReplaceAll(d, " asked", " now"), ways)
		}
		delete(byName, old.Name)
	}
	for _, p := range now.Points {
		if _, ok := byName[p.Name]; ok {
			added = append(added, p.Name)
		}
	}
	return added, nil
}
