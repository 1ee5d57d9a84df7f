package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"clm/plot"
	"clm/sweep"
	"clm/train"
)

func init() {
	register("sweep", "train a grid of runs (keys × seeds) one after another, resumably, and summarise it: clm sweep SWEEP.toml", runSweep)
}

// sweepOpts are the flags of clm sweep.
type sweepOpts struct {
	list, dryRun, slurm, summary bool
	point                        int
	metric, folder, formats      string
	sets                         setFlags
}

func runSweep(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "sweep", "clm sweep [-list | -dry-run | -slurm | -summary | -point I] [-metric NAME] [-folder DIR] [-set key=value ...] SWEEP.toml",
		"Trains every point of a sweep (a base experiment, a [grid] of keys to values, seeds) into its own run folder inside the "+
			"sweep folder, one after another, each as `clm -config BASE -run-dir FOLDER/POINT -set …` in a process of its own; "+
			"a finished point is skipped and an interrupted one continues exactly, so the same command resumes the sweep after any stop. "+
			"Then writes summary.csv, summary-seeds.csv (mean ± sd over seeds) and figures/ of a metric against each swept key, "+
			"and prints the tables. The folder keeps the resolved sweep (sweep.json): a changed sweep is refused, a grown grid runs its new points. "+
			"A sweep file: base = \"../tiny.toml\" (relative to it), seeds = 2 (or [0, 5]), folder = \"…\" (optional), "+
			"[grid] \"train.lr\" = [1e-3, 3e-3] and any other key -set takes, [set] fixed overrides (docs/experiments.md).",
		"clm sweep experiments/sweeps/lr-tiny.toml -list",
		"clm sweep experiments/sweeps/lr-tiny.toml",
		"clm sweep experiments/sweeps/lr-tiny.toml -summary -metric peak_kurtosis",
		"clm sweep experiments/sweeps/fig2-seeds.toml -slurm | sbatch --gpus-per-task=1 --time=24:00:00")
	var o sweepOpts
	fs.BoolVar(&o.list, "list", false, "print the points and where each stands; run nothing")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the command line of each point that would run; run nothing")
	fs.BoolVar(&o.slurm, "slurm", false, "print (not submit) an sbatch array job over scripts/slurm-clm.sh, one task per unfinished point")
	fs.BoolVar(&o.summary, "summary", false, "train nothing: summarise the points' run logs (tables, summary.csv, figures)")
	fs.IntVar(&o.point, "point", -1, "run point I alone (what each task of -slurm's array job runs)")
	fs.StringVar(&o.metric, "metric", "final_eval_loss", "the figures' metric: "+strings.Join(sweep.MetricNames, ", "))
	fs.StringVar(&o.folder, "folder", "", "the sweep folder (default: the sweep file's folder key, else beside it named after it)")
	fs.StringVar(&o.formats, "format", "png,svg", "figure formats, comma-separated: png, svg, pdf")
	fs.Var(&o.sets, "set", "override a key of every point, e.g. -set train.device=cpu (repeatable; not a swept key)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("sweep: which sweep file? (usage: %s)", fs.synopsis)
	}
	if !slices.Contains(sweep.MetricNames, o.metric) {
		return fmt.Errorf("sweep: -metric %q: want one of %s", o.metric, strings.Join(sweep.MetricNames, ", "))
	}
	modes := 0
	for _, on := range []bool{o.list || o.dryRun, o.slurm, o.summary, o.point >= 0} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return fmt.Errorf("sweep: give one of -list, -dry-run, -slurm, -summary and -point")
	}
	formats, err := plot.Formats(o.formats)
	if err != nil {
		return fmt.Errorf("sweep: -format: %v", err)
	}
	pl, err := planSweep(pos[0], o.folder, o.sets)
	if err != nil {
		return err
	}
	switch {
	case o.list || o.dryRun:
		return pl.list(stdout, o.dryRun)
	case o.slurm:
		return pl.slurmScript(stdout, o.folder, o.sets)
	case o.summary:
		if _, err := os.Stat(pl.s.Folder); err != nil {
			return fmt.Errorf("sweep: no sweep folder %s yet: run the sweep first (clm sweep %s)", pl.s.Folder, pl.arg)
		}
		return pl.summarize(stdout, o.metric, formats, nil)
	case o.point >= 0:
		return pl.runPoint(stdout, o.point)
	}
	return pl.runAll(stdout, o.metric, formats)
}

// sweepPlan is a sweep with its points resolved and checked against its
// folder's record.
type sweepPlan struct {
	arg    string // the sweep file as given
	s      *sweep.Sweep
	points []sweep.Point
	record *sweep.Record
	added  []string // points the folder does not have yet
	grown  bool     // the folder held an earlier, smaller grid
}

// planSweep loads the sweep, resolves every point's experiment (all of
// them, before anything runs) and compares them with the folder's record.
func planSweep(path, folder string, sets setFlags) (*sweepPlan, error) {
	s, err := sweep.Load(path, train.Keys())
	if err != nil {
		return nil, err
	}
	if folder != "" {
		s.Folder = folder
	}
	if err := s.WithSets(sets.values); err != nil {
		return nil, err
	}
	points, err := s.Points()
	if err != nil {
		return nil, err
	}
	exps := map[string]string{}
	for _, p := range points {
		exp, err := train.Load(s.Base, p.Sets)
		if err != nil {
			return nil, fmt.Errorf("%s: point %s: %v", path, p.Name, err)
		}
		b, err := exp.TOML()
		if err != nil {
			return nil, fmt.Errorf("%s: point %s: %v", path, p.Name, err)
		}
		exps[p.Name] = string(b)
	}
	rec, err := sweep.NewRecord(s, points, exps)
	if err != nil {
		return nil, err
	}
	old, err := sweep.ReadRecord(s.Folder)
	if err != nil {
		return nil, err
	}
	added, err := sweep.Reconcile(s.Folder, old, rec, experimentDiff)
	if err != nil {
		return nil, err
	}
	return &sweepPlan{arg: path, s: s, points: points, record: rec, added: added, grown: old != nil && len(added) > 0}, nil
}

// experimentDiff is sweep.Differ by train's rule: the keys that change a
// run's result.
func experimentDiff(recorded, now string) ([]string, error) {
	a, err := train.Parse("the recorded experiment", []byte(recorded), "recorded", nil)
	if err != nil {
		return nil, err
	}
	b, err := train.Parse("the experiment", []byte(now), "now", nil)
	if err != nil {
		return nil, err
	}
	return train.Differences(a, b)
}

// row is a point's summary row: where its run folder stands (from its
// latest checkpoint, as train knows it) and its run log's metrics.
func (pl *sweepPlan) row(p sweep.Point) (sweep.Row, error) {
	dir := pl.s.Dir(p)
	r := sweep.Row{Point: p, Status: "not started"}
	st, ok, err := train.LatestState(dir)
	switch {
	case err != nil:
		return r, fmt.Errorf("point %s: %w", p.Name, err)
	case ok && st.Finished():
		r.Finished, r.Status = true, "finished"
	case ok:
		r.Status = fmt.Sprintf("step %d of %d", st.Step, st.TotalSteps)
	case train.HasRun(dir):
		r.Status = "started"
	}
	r.Metrics, err = sweep.ReadMetrics(dir)
	return r, err
}

// argv is the command line that trains point p: clm's own training.
func (pl *sweepPlan) argv(exe string, p sweep.Point) ([]string, error) {
	sets, err := p.SetArgs()
	if err != nil {
		return nil, err
	}
	return append([]string{exe, "-config", pl.s.Base, "-run-dir", pl.s.Dir(p)}, sets...), nil
}

// list prints the points and where each stands, or (commands) the
// command line of each that would run.
func (pl *sweepPlan) list(stdout io.Writer, commands bool) error {
	fmt.Fprintf(stdout, "sweep %s: %d points of %s in %s\n", pl.arg, len(pl.points), pl.s.Base, pl.s.Folder)
	for _, p := range pl.points {
		r, err := pl.row(p)
		if err != nil {
			return err
		}
		if !commands {
			fmt.Fprintf(stdout, "%4d  %-50s  %s\n", p.Index, p.Name, r.Status)
			continue
		}
		if r.Finished {
			continue
		}
		argv, err := pl.argv("clm", p)
		if err != nil {
			return err
		}
		for i, a := range argv {
			argv[i] = shellWord(a)
		}
		fmt.Fprintln(stdout, strings.Join(argv, " "))
	}
	return nil
}

// shellWord quotes a word for a POSIX shell where it needs it.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-=,+:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// slurmScript prints the array job of the points that have not finished.
func (pl *sweepPlan) slurmScript(stdout io.Writer, folder string, sets setFlags) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	launcher := filepath.Join("scripts", "slurm-clm.sh")
	if _, err := os.Stat(launcher); err != nil {
		fmt.Fprintf(os.Stderr, "clm sweep: note: the tasks run %s from %s, which has none: submit from clm's folder\n", launcher, wd)
	}
	job := sweep.SlurmJob{WorkDir: wd, Script: launcher, SweepArg: pl.arg, Finished: map[string]bool{}}
	if folder != "" {
		job.Args = append(job.Args, "-folder", folder)
	}
	for _, k := range sets.order {
		v, err := sweep.TOMLValue(sets.values[k])
		if err != nil {
			return fmt.Errorf("-set %s: %v", k, err)
		}
		job.Args = append(job.Args, "-set", k+"="+v)
	}
	for _, p := range pl.points {
		r, err := pl.row(p)
		if err != nil {
			return err
		}
		job.Finished[p.Name] = r.Finished
	}
	script, err := sweep.SlurmScript(pl.s, pl.points, job)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, script)
	return err
}

// runPoint runs one point in this process's place (a task of the Slurm
// array): the folder's record first (rank 0), then nothing for a finished
// point, else the point's training.
func (pl *sweepPlan) runPoint(stdout io.Writer, i int) error {
	if i >= len(pl.points) {
		return fmt.Errorf("sweep: -point %d: the sweep has points 0 to %d", i, len(pl.points)-1)
	}
	if rank := os.Getenv("RANK"); rank == "" || rank == "0" {
		if err := pl.record.Write(pl.s.Folder); err != nil {
			return err
		}
	}
	p := pl.points[i]
	r, err := pl.row(p)
	if err != nil {
		return err
	}
	if r.Finished {
		fmt.Fprintf(stdout, "point %d (%s) has finished: nothing to do\n", i, p.Name)
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	argv, err := pl.argv(exe, p)
	if err != nil {
		return err
	}
	return syscall.Exec(exe, argv, os.Environ())
}

// runAll runs every point that has not finished, one after another, then
// summarises. A point that fails is reported and the next one runs; a
// Ctrl-C (or SIGTERM) stops the running point with its checkpoint and
// ends the sweep (exit 130), to be resumed by the same command.
func (pl *sweepPlan) runAll(stdout io.Writer, metric string, formats []string) error {
	lock, err := sweep.LockFolder(pl.s.Folder)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := pl.record.Write(pl.s.Folder); err != nil {
		return err
	}
	if pl.grown {
		fmt.Fprintf(os.Stderr, "sweep: %d points added to the sweep folder %s\n", len(pl.added), pl.s.Folder)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)
	failed := map[string]string{}
	for _, p := range pl.points {
		r, err := pl.row(p)
		if err != nil {
			return err
		}
		head := fmt.Sprintf("sweep [%d/%d] %s", p.Index+1, len(pl.points), p.Name)
		if r.Finished {
			fmt.Fprintf(os.Stderr, "%s: finished\n", head)
			continue
		}
		select {
		case <-stop:
			fmt.Fprintf(os.Stderr, "sweep: stopped before %s; continue with: clm sweep %s\n", p.Name, pl.arg)
			return errInterrupted
		default:
		}
		fmt.Fprintf(os.Stderr, "%s: %s\n", head, r.Status)
		argv, err := pl.argv(exe, p)
		if err != nil {
			return err
		}
		out, err := sweep.RunChild(argv, os.Stderr, os.Stderr, stop)
		if err != nil {
			return fmt.Errorf("sweep: point %s: %w", p.Name, err)
		}
		switch {
		case out.Interrupted():
			fmt.Fprintf(os.Stderr, "sweep: interrupted in point %s; continue with: clm sweep %s\n", p.Name, pl.arg)
			return errInterrupted
		case out.Code != 0:
			failed[p.Name] = out.String()
			fmt.Fprintf(os.Stderr, "sweep: point %s failed (%s); going on with the next\n", p.Name, out)
		}
	}
	signal.Stop(stop)
	if err := pl.summarize(stdout, metric, formats, failed); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("sweep: %d of %d points failed (their output above says why; the same command retries them)", len(failed), len(pl.points))
	}
	return nil
}

// summarize writes summary.csv, summary-seeds.csv and the figures of
// metric into the sweep folder, and prints the tables.
func (pl *sweepPlan) summarize(stdout io.Writer, metric string, formats []string, failed map[string]string) error {
	var rows []sweep.Row
	for _, p := range pl.points {
		r, err := pl.row(p)
		if err != nil {
			return err
		}
		if how, ok := failed[p.Name]; ok && !r.Finished {
			r.Status = "failed (" + how + "): " + r.Status
		}
		rows = append(rows, r)
	}
	groups := sweep.Groups(rows)
	folder := pl.s.Folder
	if err := sweep.WriteFile(filepath.Join(folder, "summary.csv"), sweep.SummaryCSV(pl.s, rows)); err != nil {
		return err
	}
	if err := sweep.WriteFile(filepath.Join(folder, "summary-seeds.csv"), sweep.SeedsCSV(pl.s, groups)); err != nil {
		return err
	}
	if err := sweep.Table(stdout, pl.s, rows, groups); err != nil {
		return err
	}
	figDir := filepath.Join(folder, "figures")
	var written []string
	for _, f := range sweep.Figures(pl.s, rows, metric) {
		if err := os.MkdirAll(figDir, 0o755); err != nil {
			return err
		}
		csvPath := filepath.Join(figDir, f.Stem+".csv")
		if err := sweep.WriteFile(csvPath, f.CSV()); err != nil {
			return err
		}
		paths, err := plot.WriteSpread(spreadFigure(f, len(pl.s.Seeds)), figDir, formats)
		if err != nil {
			return err
		}
		written = append(written, paths...)
		written = append(written, csvPath)
	}
	fmt.Fprintf(stdout, "\nsummary: %s", filepath.Join(folder, "summary.csv"))
	if len(written) > 0 {
		fmt.Fprintf(stdout, "; figures: %s", strings.Join(written, ", "))
	}
	fmt.Fprintln(stdout)
	return nil
}

// spreadFigure is the plot of a sweep figure.
func spreadFigure(f sweep.Figure, seeds int) plot.SpreadFigure {
	over := "one seed"
	if seeds > 1 {
		over = fmt.Sprintf("mean of %d seeds, whiskers min–max", seeds)
	}
	pf := plot.SpreadFigure{Stem: f.Stem, Title: fmt.Sprintf("%s against %s (%s)", f.Metric, f.Axis.Key, over),
		XLabel: f.Axis.Key, YLabel: f.Metric, LogX: f.LogX}
	if !f.Numeric {
		for _, v := range f.Axis.Values {
			pf.Categories = append(pf.Categories, sweep.ValueLabel(v))
		}
	}
	for _, l := range f.Lines {
		sl := plot.SpreadLine{Name: l.Name}
		for _, p := range l.Points {
			sl.X, sl.Mean = append(sl.X, p.X), append(sl.Mean, p.Mean)
			sl.Min, sl.Max = append(sl.Min, p.Min), append(sl.Max, p.Max)
		}
		pf.Lines = append(pf.Lines, sl)
	}
	return pf
}
