package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"clm/sweep"
	"clm/train"
)

// sweepFile is a sweep of 2 learning rates × 2 presets × 2 seeds of the
// micro experiment (12 steps each).
const sweepFile = `base = "micro.toml"
seeds = 2
folder = "FOLDER"
[grid]
"train.lr" = [1e-3, 3e-3]
"model.preset" = ["default", "skipless-parallel"]
`

// deterministic are the summary columns that are the same for the same
// runs: everything but the timings.
var deterministic = []string{"point", "lr", "preset", "seed", "status", "step", "final_eval_loss", "best_eval_loss", "peak_kurtosis", "peak_max_median"}

// TestSweepSurvivesKills: a sweep of 8 points, run straight and, in
// another folder, SIGKILLed (its running point stops with a checkpoint),
// then with every point crashing by SIGKILL at its second step (the sweep
// goes on and says which failed), then stopped by Ctrl-C (exit 130), then
// finished: both folders end with the same run logs (timings aside) and
// the same summary; the summary is the run logs' own values; the figure
// of the eval loss against the learning rate shows the spread of the
// seeds; and a finished sweep reruns nothing.
func TestSweepSurvivesKills(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	write(t, filepath.Join(dir, "straight.toml"), strings.Replace(sweepFile, "FOLDER", "straight", 1))
	write(t, filepath.Join(dir, "killed.toml"), strings.Replace(sweepFile, "FOLDER", "killed", 1))
	out, stderr, code := clm(t, dir, "sweep", "straight.toml")
	if code != 0 {
		t.Fatalf("uninterrupted sweep: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(out, "over seeds") || !strings.Contains(out, "lr=0.003,preset=skipless-parallel  2/2") {
		t.Errorf("the summary tables:\n%s", out)
	}

	// 1: SIGKILL the sweep in its third point.
	code, log := stopSweep(t, dir, nil, "sweep [3/8]", syscall.SIGKILL)
	if code != -1 || !strings.Contains(log, "stopping after this step") {
		t.Fatalf("kill 1: exit %d, the point did not stop with a checkpoint:\n%s", code, tail(log, 8))
	}
	waitUnlocked(t, filepath.Join(dir, "killed"))
	// 2: every point killed at its second step, crashing without a word.
	_, stderr, code = runClm(t, dir, []string{"CLM_CACHE=" + cacheDir(t), "CLM_FAULT=train.step@2"}, "sweep", "killed.toml")
	if code != 1 || !strings.Contains(stderr, "failed (killed by signal: killed); going on with the next") || !strings.Contains(stderr, "points failed") {
		t.Fatalf("kill 2: exit %d\n%s", code, tail(stderr, 8))
	}
	// 3: Ctrl-C in the fifth point.
	code, log = stopSweep(t, dir, nil, "sweep [5/8]", syscall.SIGINT)
	if code != 130 || !strings.Contains(log, "continue with: clm sweep killed.toml") {
		t.Fatalf("Ctrl-C: exit %d, want 130\n%s", code, tail(log, 8))
	}
	list, _, _ := clm(t, dir, "sweep", "killed.toml", "-list")
	t.Logf("after the kills:\n%s", list)
	if _, stderr, code := clm(t, dir, "sweep", "killed.toml"); code != 0 {
		t.Fatalf("resumed sweep: exit %d\n%s", code, stderr)
	}

	want, got := readSummary(t, filepath.Join(dir, "straight")), readSummary(t, filepath.Join(dir, "killed"))
	for i := range want {
		for _, col := range deterministic {
			if got[i][col] != want[i][col] {
				t.Errorf("%s %s: %s after the kills, %s straight", want[i]["point"], col, got[i][col], want[i][col])
			}
		}
		compareRecords(t, readRecords(t, filepath.Join(dir, "straight", want[i]["point"])), readRecords(t, filepath.Join(dir, "killed", want[i]["point"])))
	}
	checkSummaryIsTheLogs(t, filepath.Join(dir, "killed"), got)
	checkSpreadFigure(t, filepath.Join(dir, "killed"))

	// Finished: nothing runs again.
	_, stderr, code = clm(t, dir, "sweep", "killed.toml")
	if code != 0 || strings.Count(stderr, ": finished\n") != 8 || strings.Contains(stderr, "training:") {
		t.Errorf("a finished sweep ran again: exit %d\n%s", code, stderr)
	}
}

// stopSweep starts `clm sweep killed.toml` and, once its stderr has a
// line containing after and then a training step's log line, sends sig to
// the sweep; it returns the exit status (-1: killed) and stderr.
func stopSweep(t *testing.T, dir string, env []string, after string, sig syscall.Signal) (int, string) {
	t.Helper()
	cmd, pipe := startClm(t, dir, env, "sweep", "killed.toml")
	var log strings.Builder
	sc := bufio.NewScanner(pipe)
	armed, sent := false, false
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		armed = armed || strings.Contains(line, after)
		if armed && !sent && strings.Contains(line, "/12  loss") {
			cmd.Process.Signal(sig)
			sent = true
		}
	}
	err := cmd.Wait()
	if !sent {
		t.Fatalf("never saw %q and a step after it:\n%s", after, log.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), log.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, log.String()
}

// waitUnlocked waits until no process holds a run folder lock of the sweep
// folder (the point a killed sweep left stops on its own).
func waitUnlocked(t *testing.T, folder string) {
	t.Helper()
	locks, _ := filepath.Glob(filepath.Join(folder, "*", ".lock"))
	for _, l := range locks {
		f, err := os.Open(l)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s is still held", l)
			}
			time.Sleep(20 * time.Millisecond)
		}
		f.Close()
	}
}

// readSummary reads a sweep folder's summary.csv as one map per point.
func readSummary(t *testing.T, folder string) []map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(folder, "summary.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) != 9 {
		t.Fatalf("summary.csv: %d lines (%v)", len(recs), err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// checkSummaryIsTheLogs recomputes each point's summary from its
// metrics.jsonl, read as plain JSON: the last and lowest eval_loss, the
// largest kurtosis and max_median_ratio of any layer, the median
// tokens_per_s; the summary's numbers must be these, exactly.
func checkSummaryIsTheLogs(t *testing.T, folder string, rows []map[string]string) {
	t.Helper()
	for _, row := range rows {
		b, err := os.ReadFile(filepath.Join(folder, row["point"], "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		evals := map[float64]float64{}
		var tps []float64
		kurt, maxMed := math.Inf(-1), math.Inf(-1)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var rec struct {
				Kind     string  `json:"kind"`
				Step     float64 `json:"step"`
				EvalLoss float64 `json:"eval_loss"`
				TPS      float64 `json:"tokens_per_s"`
				Layers   []struct {
					Kurtosis float64 `json:"kurtosis"`
					MaxMed   float64 `json:"max_median_ratio"`
				} `json:"layers"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			switch rec.Kind {
			case "eval":
				evals[rec.Step] = rec.EvalLoss
			case "train":
				tps = append(tps, rec.TPS)
			case "stats":
				for _, l := range rec.Layers {
					kurt, maxMed = math.Max(kurt, l.Kurtosis), math.Max(maxMed, l.MaxMed)
				}
			}
		}
		var steps []float64
		best := math.Inf(1)
		for s, l := range evals {
			steps, best = append(steps, s), math.Min(best, l)
		}
		sort.Float64s(steps)
		sort.Float64s(tps)
		med := tps[len(tps)/2]
		if len(tps)%2 == 0 {
			med = (tps[len(tps)/2-1] + tps[len(tps)/2]) / 2
		}
		want := map[string]float64{"final_eval_loss": evals[steps[len(steps)-1]], "best_eval_loss": best,
			"peak_kurtosis": kurt, "peak_max_median": maxMed, "tokens_per_s": med}
		for col, w := range want {
			g, err := strconv.ParseFloat(row[col], 64)
			if err != nil || g != w {
				t.Errorf("%s %s: summary %s, the log %v", row["point"], col, row[col], w)
			}
		}
		if w, err := strconv.ParseFloat(row["wall_s"], 64); err != nil || !(w > 0) {
			t.Errorf("%s wall_s %q", row["point"], row["wall_s"])
		}
	}
}

// checkSpreadFigure: the figure of the eval loss against the learning
// rate is drawn, and its data has both seeds at every point, apart.
func checkSpreadFigure(t *testing.T, folder string) {
	t.Helper()
	stem := filepath.Join(folder, "figures", "final_eval_loss-vs-lr")
	for _, ext := range []string{".png", ".svg"} {
		if fi, err := os.Stat(stem + ext); err != nil || fi.Size() < 1000 {
			t.Errorf("figure %s%s: %v", stem, ext, err)
		}
	}
	b, err := os.ReadFile(stem + ".csv")
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if len(recs) != 5 {
		t.Fatalf("figure data: %q", recs)
	}
	for _, r := range recs[1:] { // line, lr, n, mean, sd, min, max, values
		lo, _ := strconv.ParseFloat(r[5], 64)
		hi, _ := strconv.ParseFloat(r[6], 64)
		if r[2] != "2" || !(lo < hi) || len(strings.Split(r[7], ";")) != 2 {
			t.Errorf("figure point %q: want 2 seeds apart", r)
		}
	}
}

// TestSweepRefuses: a sweep file with an unknown key, a key the experiment
// has not or a point the experiment refuses is one line naming the file
// and the key, before anything is written; a sweep changed after its folder
// was made is refused with what changed; -list and -slurm write nothing.
func TestSweepRefuses(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	good := strings.Replace(sweepFile, "FOLDER", "out", 1)
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown sweep key", strings.Replace(good, "seeds = 2", "seeds = 2\nrepeat = 3", 1), `bad.toml:3: unknown key "repeat"`},
		{"no such key", strings.Replace(good, `"train.lr"`, `"train.learning_rate"`, 1), `bad.toml:5: grid "train.learning_rate": not a key of the experiment`},
		{"a typo", strings.Replace(good, `"model.preset"`, `"model.prest"`, 1), `bad.toml:6: grid "model.prest": not a key of the experiment (did you mean "model.preset"?)`},
		{"a value refused", strings.Replace(good, "3e-3]", "30.0]", 1), `micro.toml: train.lr: 30 is outside (0, 10]`},
		{"no such preset", strings.Replace(good, `"default"`, `"defualt"`, 1), `bad.toml: point lr=0.001,preset=defualt,seed=0:`},
		{"no base", strings.Replace(good, "micro.toml", "nope.toml", 1), `bad.toml:1: base: stat `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, filepath.Join(dir, "bad.toml"), tc.src)
			_, err := planSweep(path, "", setFlags{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want one line containing %q", err, tc.want)
			}
		})
	}
	// The command says it in one line and writes nothing.
	_, stderr, code := clm(t, dir, "sweep", "bad.toml")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "clm: bad.toml:1: base:") {
		t.Errorf("exit %d, want 1 and one line:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Errorf("a refused sweep made its folder")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-list", "-slurm", "s.toml"}, "give one of -list, -dry-run, -slurm, -summary and -point"},
		{[]string{"-format", "gif", "s.toml"}, `sweep: -format: plot: unsupported format "gif"`},
		{[]string{"-metric", "loss", "s.toml"}, `sweep: -metric "loss": want one of final_eval_loss,`},
		{[]string{"a.toml", "b.toml"}, "sweep: which sweep file?"},
	} {
		if err := runSweep(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("clm sweep %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	write(t, filepath.Join(dir, "s.toml"), good)
	for _, args := range [][]string{{"-list"}, {"-dry-run"}, {"-slurm"}} {
		clm(t, dir, append([]string{"sweep", "s.toml"}, args...)...)
		if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
			t.Fatalf("sweep %v wrote its folder", args)
		}
	}
	// A sweep folder made by an earlier version of the sweep file.
	pl, err := planSweep(filepath.Join(dir, "s.toml"), "", setFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.record.Write(pl.s.Folder); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ change, want string }{
		{`"train.lr" = [1e-3, 2e-3]`, "holds point lr=0.003,preset=default,seed=0, which the sweep no longer has"},
		{"[set]\n\"train.max_steps\" = 13", "changed since the sweep folder " + pl.s.Folder + " was made (train.max_steps: 12 in the folder, 13 now)"},
	} {
		src := strings.Replace(good, `"train.lr" = [1e-3, 3e-3]`, tc.change, 1)
		if strings.HasPrefix(tc.change, "[set]") {
			src = good + tc.change + "\n"
		}
		path := write(t, filepath.Join(dir, "s.toml"), src)
		if _, err := planSweep(path, "", setFlags{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.change, err, tc.want)
		}
	}
	// A grown grid runs its new points; an operational key is no change.
	write(t, filepath.Join(dir, "s.toml"), strings.Replace(good, "seeds = 2", "seeds = 3", 1)+"[set]\n\"train.threads\" = 2\n")
	out, stderr, code := clm(t, dir, "sweep", "s.toml", "-list")
	if code != 0 || strings.Count(out, "not started") != 12 {
		t.Errorf("grown grid: exit %d\n%s%s", code, out, stderr)
	}
	keys := train.Keys()
	if !slices.Contains(keys, sweep.SeedKey) {
		t.Errorf("the experiment has no key %s", sweep.SeedKey)
	}
}

// TestSweepPoint: -point I (a task of the Slurm array job) records the
// sweep, trains point I alone as clm -config does, and does nothing for a
// finished point.
func TestSweepPoint(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	write(t, filepath.Join(dir, "s.toml"), "base = \"micro.toml\"\nseeds = [5]\n[grid]\n\"train.lr\" = [1e-3, 3e-3]\n[set]\n\"train.max_steps\" = 2\n")
	out, stderr, code := clm(t, dir, "sweep", "s.toml", "-point", "1")
	if code != 0 || !strings.Contains(out, "done: 2 steps; run folder s/lr=0.003,seed=5") {
		t.Fatalf("-point 1: exit %d\n%s%s", code, out, stderr)
	}
	if st, ok, err := train.LatestState(filepath.Join(dir, "s", "lr=0.003,seed=5")); !ok || err != nil || !st.Finished() {
		t.Errorf("point 1 did not finish: %+v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s", "lr=0.001,seed=5")); err == nil {
		t.Errorf("-point 1 ran point 0 too")
	}
	if _, err := os.Stat(filepath.Join(dir, "s", sweep.File)); err != nil {
		t.Errorf("-point wrote no record: %v", err)
	}
	if out, _, code := clm(t, dir, "sweep", "s.toml", "-point", "1"); code != 0 || !strings.Contains(out, "point 1 (lr=0.003,seed=5) has finished") {
		t.Errorf("-point 1 again: exit %d\n%s", code, out)
	}
	if _, stderr, code := clm(t, dir, "sweep", "s.toml", "-point", "2"); code != 1 || !strings.Contains(stderr, "-point 2: the sweep has points 0 to 1") {
		t.Errorf("-point 2: exit %d\n%s", code, stderr)
	}
	out, _, code = clm(t, dir, "sweep", "s.toml", "-summary")
	if table := strings.Join(strings.Fields(out), " "); code != 0 || !strings.Contains(table, "lr=0.001,seed=5 not started") || !strings.Contains(table, "lr=0.003,seed=5 finished") {
		t.Errorf("-summary: exit %d\n%s", code, out)
	}
}

// TestSweepDocExample: the sweep file docs/experiments.md shows is one.
func TestSweepDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/experiments.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(doc), "### Sweeps")
	_, block, ok := strings.Cut(after, "```toml\n")
	block, _, _ = strings.Cut(block, "```")
	if !ok || block == "" {
		t.Fatal("docs/experiments.md has no sweep file under Sweeps")
	}
	dir := t.TempDir()
	tiny, err := os.ReadFile("../../experiments/tiny.toml")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "tiny.toml"), string(tiny))
	pl, err := planSweep(write(t, filepath.Join(dir, "sweeps", "doc.toml"), block), "", setFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.points) != 12 || pl.points[7].Name != "lr=0.003,preset=skipless-parallel,seed=1" {
		t.Errorf("%d points, point 7 %s", len(pl.points), pl.points[7].Name)
	}
}
