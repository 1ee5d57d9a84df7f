package sweep

import (
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// keys stands for train.Keys() (cmd/clm's tests use the real list).
var keys = []string{"name", "model.preset", "model.n_layer", "train.lr", "train.seed", "train.max_steps", "train.eps", "model.eps", "data.seed", "data.extensions"}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		err       string // substring of the one-line error; "" for none
		axes      []string
		seeds     []int64
		folder    string
	}{
		{name: "grid and seeds", src: "base = \"x.toml\"\nseeds = 3\n[grid]\n\"train.lr\" = [1e-3, 3e-3]\n\"model.preset\" = [\"default\", \"skipless\"]\n",
			axes: []string{"train.lr", "model.preset"}, seeds: []int64{0, 1, 2}, folder: "sw/grid"},
		{name: "dotted keys keep the file's order", src: "base = \"x.toml\"\n[grid]\nmodel.preset = [\"a\", \"b\"]\ntrain.lr = [1.0]\n",
			axes: []string{"model.preset", "train.lr"}, folder: "sw/grid"},
		{name: "seed list and folder", src: "base = \"../x.toml\"\nfolder = \"../runs/s\"\nseeds = [4, 2]\n", seeds: []int64{4, 2}, folder: "runs/s"},
		{name: "no base", src: "seeds = 2\n", err: "sw/grid.toml: base: which experiment?"},
		{name: "unknown sweep key", src: "base = \"x\"\nseed = 2\n", err: `sw/grid.toml:2: unknown key "seed"`},
		{name: "unknown experiment key", src: "base = \"x\"\n[grid]\n\"train.lrr\" = [1]\n", err: `sw/grid.toml:3: grid "train.lrr": not a key of the experiment (did you mean "train.lr"?)`},
		{name: "unknown set key", src: "base = \"x\"\nseeds = 1\n[set]\n\"train.max_step\" = 3\n", err: `sw/grid.toml:4: set "train.max_step": not a key`},
		{name: "not a list", src: "base = \"x\"\n[grid]\n\"train.lr\" = 1e-3\n", err: `sw/grid.toml:3: grid "train.lr": want a list`},
		{name: "empty list", src: "base = \"x\"\n[grid]\n\"train.lr\" = []\n", err: "want a list"},
		{name: "twice", src: "base = \"x\"\n[grid]\n\"train.lr\" = [1e-3, 0.001]\n", err: "0.001 is listed twice"},
		{name: "seed in grid", src: "base = \"x\"\n[grid]\n\"train.seed\" = [1, 2]\n", err: "give the seeds as seeds = N"},
		{name: "name in set", src: "base = \"x\"\nseeds = 2\n[set]\nname = \"y\"\n", err: "the sweep names its points itself"},
		{name: "grid and set", src: "base = \"x\"\n[grid]\n\"train.lr\" = [1.0]\n[set]\n\"train.lr\" = 2.0\n", err: `"train.lr" is both in [grid] and in [set]`},
		{name: "seeds and set seed", src: "base = \"x\"\nseeds = 2\n[set]\n\"train.seed\" = 2\n", err: "set \"train.seed\" and seeds both give the seed"},
		{name: "nothing", src: "base = \"x\"\n", err: "nothing to sweep"},
		{name: "bad seeds", src: "base = \"x\"\nseeds = 0\n", err: "sw/grid.toml:2: seeds: 0: want a count"},
		{name: "seeds twice", src: "base = \"x\"\nseeds = [1, 1]\n", err: "seed 1 is listed twice"},
		{name: "seeds not integers", src: "base = \"x\"\nseeds = [1.5]\n", err: "1.5 is not an integer"},
		{name: "syntax", src: "base = \"x\"\n[grid\n", err: "to end table name"},
		{name: "too many points", src: "base = \"x\"\nseeds = 10000\n[grid]\n\"train.lr\" = [1.0, 2.0]\n", err: "more than 10000 points"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("sw/grid.toml", []byte(tc.src), keys)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var axes []string
			for _, a := range s.Axes {
				axes = append(axes, a.Key)
			}
			if !reflect.DeepEqual(axes, tc.axes) || !reflect.DeepEqual(s.Seeds, tc.seeds) || s.Folder != filepath.FromSlash(tc.folder) {
				t.Errorf("axes %v seeds %v folder %s, want %v %v %s", axes, s.Seeds, s.Folder, tc.axes, tc.seeds, tc.folder)
			}
		})
	}
}

func TestPoints(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string // point names in order
		groups    []string
	}{
		{name: "seeds fastest, first axis slowest",
			src:    "base = \"x\"\nseeds = 2\n[grid]\n\"train.lr\" = [3e-3, 1e-4]\n\"model.preset\" = [\"skipless-parallel\", \"default\"]\n",
			want:   []string{"lr=0.003,preset=skipless-parallel,seed=0", "lr=0.003,preset=skipless-parallel,seed=1", "lr=0.003,preset=default,seed=0", "lr=0.003,preset=default,seed=1", "lr=0.0001,preset=skipless-parallel,seed=0", "lr=0.0001,preset=skipless-parallel,seed=1", "lr=0.0001,preset=default,seed=0", "lr=0.0001,preset=default,seed=1"},
			groups: []string{"lr=0.003,preset=skipless-parallel", "lr=0.003,preset=skipless-parallel", "lr=0.003,preset=default", "lr=0.003,preset=default", "lr=0.0001,preset=skipless-parallel", "lr=0.0001,preset=skipless-parallel", "lr=0.0001,preset=default", "lr=0.0001,preset=default"}},
		{name: "no seeds", src: "base = \"x\"\n[grid]\n\"model.n_layer\" = [2, 12]\n", want: []string{"n_layer=2", "n_layer=12"}, groups: []string{"n_layer=2", "n_layer=12"}},
		{name: "seeds alone", src: "base = \"x\"\nseeds = [3, 1]\n", want: []string{"seed=3", "seed=1"}, groups: []string{"all", "all"}},
		{name: "shared last parts name the whole key", src: "base = \"x\"\nseeds = 1\n[grid]\n\"train.eps\" = [1e-8]\n\"model.eps\" = [1e-5]\n\"data.seed\" = [1]\n",
			want: []string{"train.eps=1e-08,model.eps=1e-05,data.seed=1,seed=0"}, groups: []string{"train.eps=1e-08,model.eps=1e-05,data.seed=1"}},
		{name: "unsafe characters and lists", src: "base = \"x\"\n[grid]\n\"data.extensions\" = [[\".py\", \".go\"], [\"a/b c\"]]\n",
			want: []string{"extensions=.py+.go", "extensions=a_b_c"}, groups: []string{"extensions=.py+.go", "extensions=a_b_c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("grid.toml", []byte(tc.src), keys)
			if err != nil {
				t.Fatal(err)
			}
			ps, err := s.Points()
			if err != nil {
				t.Fatal(err)
			}
			var names, groups []string
			for i, p := range ps {
				names, groups = append(names, p.Name), append(groups, p.Group)
				if p.Index != i {
					t.Errorf("point %d has index %d", i, p.Index)
				}
			}
			if !reflect.DeepEqual(names, tc.want) || !reflect.DeepEqual(groups, tc.groups) {
				t.Errorf("names %q groups %q\nwant %q %q", names, groups, tc.want, tc.groups)
			}
		})
	}
}

// TestPointSets: a point's -set arguments read back (as TOML, as clm -set
// reads them) to the values and types of the sweep file.
func TestPointSets(t *testing.T) {
	src := "base = \"x\"\nseeds = [7]\n[grid]\n\"train.lr\" = [3e-4]\n\"model.preset\" = [\"skip\\\"less\"]\n\"data.extensions\" = [[\".py\"]]\n[set]\n\"train.max_steps\" = 12\n"
	s, err := Parse("grid.toml", []byte(src), keys)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := s.Points()
	if err != nil {
		t.Fatal(err)
	}
	args, err := ps[0].SetArgs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for i := 0; i < len(args); i += 2 {
		if args[i] != "-set" {
			t.Fatalf("args %q", args)
		}
		k, v, _ := strings.Cut(args[i+1], "=")
		var doc struct{ V any }
		if _, err := toml.Decode("V = "+v, &doc); err != nil {
			t.Fatalf("%s: %v", args[i+1], err)
		}
		got[k] = doc.V
	}
	want := map[string]any{"train.lr": 3e-4, "model.preset": `skip"less`, "data.extensions": []any{".py"}, "train.max_steps": int64(12), "train.seed": int64(7)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sets read back %#v, want %#v", got, want)
	}
}

func TestFolderName(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ in, want string }{
		{"lr=0.003,preset=skipless-parallel,seed=1", "lr=0.003,preset=skipless-parallel,seed=1"},
		{"path=a/b c", "path=a_b_c"},
		{"..", "point"},
		{"name=é", "name=_"},
	} {
		if got := folderName(tc.in); got != tc.want {
			t.Errorf("folderName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	a, b := folderName(long+"a"), folderName(long+"b")
	if len(a) > maxName || a == b {
		t.Errorf("long names: %d bytes, distinct %v", len(a), a != b)
	}
}

func TestPointsCollide(t *testing.T) {
	s, err := Parse("grid.toml", []byte("base = \"x\"\n[grid]\n\"data.extensions\" = [[\"a b\"], [\"a/b\"]]\n"), keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Points(); err == nil || !strings.Contains(err.Error(), `would share the folder "extensions=a_b"`) {
		t.Errorf("error %v", err)
	}
}

func TestWithSets(t *testing.T) {
	s, _ := Parse("grid.toml", []byte("base = \"x\"\nseeds = 2\n[grid]\n\"train.lr\" = [1.0]\n"), keys)
	for _, tc := range []struct {
		sets map[string]any
		err  string
	}{
		{map[string]any{"train.max_steps": int64(3)}, ""},
		{map[string]any{"train.lr": 2.0}, "-set train.lr: grid.toml sweeps over it"},
		{map[string]any{"train.seed": int64(2)}, "-set train.seed: grid.toml sweeps over it"},
	} {
		err := s.WithSets(tc.sets)
		if (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%v: %v, want %q", tc.sets, err, tc.err)
		}
	}
}

func TestReconcile(t *testing.T) {
	rec := func(pts ...string) *Record {
		r := &Record{Sweep: "s.toml"}
		for _, p := range pts {
			name, exp, _ := strings.Cut(p, ":")
			r.Points = append(r.Points, RecordPoint{Name: name, Experiment: exp})
		}
		return r
	}
	differ := func(a, b string) ([]string, error) {
		if a != b {
			return []string{"train.lr: " + a + " in the run, " + b + " asked"}, nil
		}
		return nil, nil
	}
	for _, tc := range []struct {
		name      string
		old, now  *Record
		added     []string
		errSubstr string
	}{
		{"new folder", nil, rec("a:1", "b:1"), []string{"a", "b"}, ""},
		{"same", rec("a:1", "b:1"), rec("a:1", "b:1"), nil, ""},
		{"grown", rec("a:1"), rec("a:1", "b:1"), []string{"b"}, ""},
		{"point gone", rec("a:1", "b:1"), rec("a:1"), nil, "holds point b, which the sweep no longer has"},
		{"point changed", rec("a:1"), rec("a:2"), nil, "point a changed since the sweep folder f was made (train.lr: 1 in the folder, 2 now)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, err := Reconcile("f", tc.old, tc.now, differ)
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("error %v, want %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(added, tc.added) {
				t.Errorf("added %v (%v), want %v", added, err, tc.added)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if r, err := ReadRecord(dir); r != nil || err != nil {
		t.Fatalf("empty folder: %v %v", r, err)
	}
	s, _ := Parse("grid.toml", []byte("base = \"x\"\nseeds = 2\n[grid]\n\"train.lr\" = [1e-3]\n"), keys)
	ps, _ := s.Points()
	r, err := NewRecord(s, ps, map[string]string{ps[0].Name: "exp0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	back, err := ReadRecord(dir)
	if err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("read back %+v (%v), want %+v", back, err, r)
	}
	if back.Points[0].Set["train.lr"] != "0.001" || back.Points[1].Set["train.seed"] != "1" {
		t.Errorf("sets %v", back.Points[0].Set)
	}
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{{[]int{0}, "0"}, {[]int{0, 1, 2, 3}, "0-3"}, {[]int{0, 2, 3, 5, 7, 8}, "0,2-3,5,7-8"}} {
		if got := ranges(tc.in); got != tc.want {
			t.Errorf("ranges(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSlurmScript(t *testing.T) {
	s, _ := Parse("sw/grid.toml", []byte("base = \"x\"\nseeds = 2\n[grid]\n\"train.lr\" = [1e-3, 3e-3]\n"), keys)
	ps, _ := s.Points()
	job := SlurmJob{WorkDir: "/work/it's", Script: "scripts/slurm-clm.sh", SweepArg: "sw/grid.toml", Args: []string{"-folder", "runs/x y", "-set", `train.device="cuda"`},
		Finished: map[string]bool{ps[1].Name: true}}
	got, err := SlurmScript(s, ps, job)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#!/usr/bin/env bash\n", "#SBATCH --array=0,2-3\n", "#SBATCH --job-name=sweep-grid\n",
		"#     1  lr=0.001,seed=1  (finished)\n", `cd '/work/it'\''s'` + "\n",
		`exec srun scripts/slurm-clm.sh sweep sw/grid.toml -point "$SLURM_ARRAY_TASK_ID" -folder 'runs/x y' -set 'train.device="cuda"'` + "\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	for _, p := range ps {
		job.Finished[p.Name] = true
	}
	if _, err := SlurmScript(s, ps, job); err == nil || !strings.Contains(err.Error(), "every point has finished") {
		t.Errorf("all finished: %v", err)
	}
}

func TestSpreadOf(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		in                 []float64
		n                  int
		mean, sd, min, max float64
	}{
		{nil, 0, nan, nan, nan, nan},
		{[]float64{2}, 1, 2, nan, 2, 2},
		{[]float64{1, 3}, 2, 2, math.Sqrt2, 1, 3},
		{[]float64{1, nan, 2, 3, math.Inf(1)}, 3, 2, 1, 1, 3},
	} {
		s := SpreadOf(tc.in)
		same := func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }
		if s.N != tc.n || !same(s.Mean, tc.mean) || !same(s.Min, tc.min) || !same(s.Max, tc.max) || !(same(s.SD, tc.sd) || math.Abs(s.SD-tc.sd) < 1e-15) {
			t.Errorf("SpreadOf(%v) = %+v", tc.in, s)
		}
	}
}

func TestLockFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sw")
	l, err := LockFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockFolder(dir); err == nil || !strings.Contains(err.Error(), "is in use by process") {
		t.Errorf("a second lock: %v", err)
	}
	l.Release()
	l2, err := LockFolder(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Release()
}
