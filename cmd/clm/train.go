package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"clm/train"
)

func init() {
	register("train", "train a model: clm -config FILE [-set key=value ...] | clm -resume RUN_DIR", runTrain)
}

func runTrain(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "train", "clm -config FILE [-set key=value ...] [-run-dir DIR] [-fresh]  |  clm -resume RUN [-set ...]",
		"Trains the experiment of FILE into its run folder (runs/<name>), or continues RUN from its latest checkpoint.",
		"clm -config experiments/tiny.toml",
		"clm -config experiments/skipless.toml -set train.precision=bf16 -set model.n_layer=12",
		"clm -config experiments/default.toml -run-dir runs/default-seed1 -set train.seed=1",
		"clm -resume runs/skipless")
	configPath := fs.String("config", "", "experiment file (TOML), e.g. experiments/skipless.toml")
	resume := fs.String("resume", "", "run folder to continue from its latest checkpoint")
	runDir := fs.String("run-dir", "", "run folder (default runs/<experiment name>); one that holds this experiment is continued, another is refused")
	fresh := fs.Bool("fresh", false, "move a run folder that holds a run aside (to DIR.old-<time>, never deleted) and start afresh")
	profile := fs.String("profile", "", "profile step N, or steps N:M, with libtorch's profiler: the time per op and a Chrome trace in RUN/profile/")
	var sets setFlags
	fs.Var(&sets, "set", "override a key, e.g. -set model.n_layer=18 -set train.lr=3e-4 (repeatable)")
	if isHelp(args) {
		usage(stdout)
		fmt.Fprintln(stdout)
	}
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (see clm -h)", pos[0])
	}
	var steps train.ProfileSteps
	if *profile != "" {
		if steps, err = train.ParseProfileSteps(*profile); err != nil {
			return fmt.Errorf("-%w", err)
		}
	}
	exp, dir, err := loadExperiment(*configPath, *resume, *runDir, sets.values)
	if err != nil {
		return err
	}
	if *fresh {
		if *resume != "" {
			return errors.New("give -fresh or -resume, not both")
		}
		aside, err := train.MoveAside(dir)
		if err != nil {
			return err
		}
		if aside != "" {
			fmt.Fprintf(os.Stderr, "moved the old run aside: %s\n", aside)
		}
	}
	ctx, stop := signalContext()
	defer stop()
	r, err := train.Setup(ctx, exp, train.SetupOptions{Dir: dir, Resume: *resume != "", Log: os.Stderr, Progress: true, Command: os.Args,
		Profile: steps})
	if errors.Is(err, train.ErrDataInterrupted) {
		fmt.Fprintf(os.Stderr, "clm: %v\n", err)
		return errInterrupted
	}
	if err != nil {
		return err
	}
	defer r.Close()
	stopNote.Store("stopping after this step and saving a checkpoint (again to quit at once)")
	if err := r.Trainer.Run(ctx); err != nil {
		if errors.Is(err, train.ErrInterrupted) {
			fmt.Fprintf(stdout, "interrupted at step %d; continue with: clm -resume %s\n", r.Trainer.State().Step, dir)
			return errInterrupted
		}
		return err
	}
	fmt.Fprintf(stdout, "done: %d steps; run folder %s (plot with: clm plot %s)\n", r.Trainer.State().Step, dir, dir)
	return nil
}

// loadExperiment reads the experiment of -config or of the run folder of
// -resume, and names the run folder.
func loadExperiment(configPath, resume, runDir string, sets map[string]any) (*train.Experiment, string, error) {
	switch {
	case resume != "" && configPath != "":
		return nil, "", errors.New("give -config or -resume, not both (a run folder keeps its own config.toml)")
	case resume != "":
		cfg := train.RunConfig(resume)
		if _, err := os.Stat(cfg); err != nil {
			return nil, "", fmt.Errorf("resume: %s is not a run folder (no config.toml)", resume)
		}
		exp, err := train.Load(cfg, sets)
		return exp, resume, err
	case configPath != "":
		exp, err := train.Load(configPath, sets)
		if err != nil {
			return nil, "", err
		}
		if runDir == "" {
			runDir = filepath.Join("runs", exp.Name)
		}
		return exp, runDir, nil
	}
	usage(os.Stderr)
	return nil, "", errUsage
}

// errInterrupted exits with 130 like a shell's Ctrl-C.
var errInterrupted = errors.New("interrupted")

// stopNote is what the first SIGINT or SIGTERM announces; it changes
// once training starts.
var stopNote atomic.Value

func init() { stopNote.Store("stopping (again to quit at once)") }

// signalContext is cancelled by the first SIGINT or SIGTERM (the run saves
// a checkpoint and stops); a second one exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		n := 0
		for range ch {
			if n++; n == 1 {
				fmt.Fprintf(os.Stderr, "\nclm: %s\n", stopNote.Load())
				cancel()
			} else {
				fmt.Fprintln(os.Stderr, "clm: quit")
				os.Exit(130)
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
