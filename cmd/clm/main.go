// Command clm trains and studies GPT-2-style language models on source code
// with the transformer blocks of "Simplifying Transformer Blocks" (He &
// Hofmann, ICLR 2024) and "Understanding and Minimising Outlier Features in
// Transformer Training" (He et al., NeurIPS 2024).
//
// Usage:
//
//	clm -config experiments/skipless.toml [-set key=value ...]   train
//	clm <subcommand> [flags]                                      see `clm help`
//
// The command only wires packages together: model/ (the variants), data/
// (tokenizer and corpus), train/ (the loop) and torch/ (libtorch).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"

	"clm/torch"
)

// command is one `clm <name>` subcommand. Files of this package register
// theirs from init.
type command struct {
	summary string
	run     func(args []string, stdout io.Writer) error
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string, stdout io.Writer) error) {
	if _, dup := commands[name]; dup {
		panic("clm: command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

// errUsage marks an error already explained by a usage message.
var errUsage = errors.New("usage")

func main() {
	// Every command runs its libtorch work on this goroutine: keep it on one
	// OS thread, whose OpenMP team and thread count then serve it throughout
	// (a goroutine that moves starts another team while the old one spins).
	runtime.LockOSThread()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes clm with args and returns the process exit code. Errors are
// printed as one line on stderr; panics never escape as traces.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "clm: internal error: %v\n", r)
			code = 3
		}
	}()
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name := args[0]
		if name == "help" {
			usage(stdout)
			return 0
		}
		c, ok := commands[name]
		if !ok {
			fmt.Fprintf(stderr, "clm: unknown command %q (see `clm help`)\n", name)
			return 2
		}
		if name != "version" {
			warnUnusedGPUs(stderr)
		}
		return report(c.run(args[1:], stdout), stderr)
	}
	if c, ok := commands["train"]; ok {
		warnUnusedGPUs(stderr)
		return report(c.run(args, stdout), stderr)
	}
	usage(stderr)
	return 2
}

// warnUnusedGPUs says so, loudly, when this machine has NVIDIA GPUs that
// this build cannot use: whatever the command computes runs on the CPU.
func warnUnusedGPUs(stderr io.Writer) {
	if err := torch.UnusedGPUs(); err != nil {
		fmt.Fprintf(stderr, "clm: WARNING: %v\n", err)
	}
}

func report(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errInterrupted):
		return 130
	}
	fmt.Fprintf(stderr, "clm: %v\n", err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: clm -config FILE [-set key=value ...]   (train; clm -h for its flags)")
	fmt.Fprintln(w, "       clm <command> [flags] [RUN]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nclm <command> -h shows a command's flags and examples. RUN is a run folder (runs/<name>).")
}
