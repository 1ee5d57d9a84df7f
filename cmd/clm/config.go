package main

import (
	"fmt"
	"io"
	"path/filepath"

	"clm/train"
)

func init() {
	register("config", "print an experiment as a run would resolve it, with its size, tokens, steps and memory: clm config -config FILE [-set ...]", runConfig)
}

// runConfig prints the resolved experiment (a valid experiment file) and
// what it amounts to, as comments; nothing is written.
func runConfig(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "config", "clm config -config FILE [-set key=value ...] [-run-dir DIR]  |  clm config RUN",
		"Prints the experiment as a run resolves it (its preset, every key) followed by what it amounts to: parameters, "+
			"tokens per step and in all, steps, memory, and the time at the speed a run of it logged. Writes nothing.",
		"clm config -config experiments/skipless.toml",
		"clm config -config experiments/default.toml -set model.n_layer=12 -set train.max_steps=20000",
		"clm config runs/demo")
	configPath := fs.String("config", "", "experiment file (TOML)")
	runDir := fs.String("run-dir", "", "the run folder whose logged speed estimates the time (default runs/<name>)")
	var sets setFlags
	fs.Var(&sets, "set", "override a key (repeatable), as for training")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := fs.atMost(pos, 1); err != nil {
		return err
	}
	path := *configPath
	switch {
	case len(pos) == 1 && path != "":
		return fmt.Errorf("config: give -config FILE or a RUN, not both")
	case len(pos) == 1:
		path, *runDir = train.RunConfig(pos[0]), pos[0]
	case path == "":
		return fmt.Errorf("config: which experiment? (usage: %s)", fs.synopsis)
	}
	exp, err := train.Load(path, sets.values)
	if err != nil {
		return err
	}
	if *runDir == "" {
		*runDir = filepath.Join("runs", exp.Name)
	}
	b, err := exp.TOML()
	if err != nil {
		return err
	}
	if _, err := stdout.Write(b); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "\n%s", train.Describe(exp, train.LoggedSpeed(*runDir)))
	return err
}
