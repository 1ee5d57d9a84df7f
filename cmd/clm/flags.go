package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// cmdFlags is the flag set of one `clm <command>`: -h prints its usage (the
// synopsis, what it does, the flags and examples) on stdout and exits 0; a
// bad flag is a one-line error that points at -h.
type cmdFlags struct {
	*flag.FlagSet
	name     string   // "sample", "data prepare"
	synopsis string   // "clm sample [flags] RUN"
	about    string   // one sentence
	examples []string // command lines
	stdout   io.Writer
}

func newFlags(stdout io.Writer, name, synopsis, about string, examples ...string) *cmdFlags {
	fs := flag.NewFlagSet("clm "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &cmdFlags{FlagSet: fs, name: name, synopsis: synopsis, about: about, examples: examples, stdout: stdout}
}

// usage writes the command's help.
func (c *cmdFlags) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis, c.about)
	var any bool
	c.VisitAll(func(*flag.Flag) { any = true })
	if any {
		fmt.Fprintln(w, "\nflags:")
		c.SetOutput(w)
		c.PrintDefaults()
		c.SetOutput(io.Discard)
	}
	if len(c.examples) > 0 {
		fmt.Fprintln(w, "\nexamples:")
		for _, e := range c.examples {
			fmt.Fprintln(w, "  "+e)
		}
	}
}

// parse parses args, whose positional arguments may come before, between
// or after the flags, and returns them. -h prints the usage on stdout and
// returns flag.ErrHelp (exit 0).
func (c *cmdFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(c.stdout)
				return nil, err
			}
			return nil, fmt.Errorf("%s: %v (see clm %s -h)", c.name, err, c.name)
		}
		args = c.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// atMost refuses more than n positional arguments, naming the first extra.
func (c *cmdFlags) atMost(pos []string, n int) error {
	if len(pos) > n {
		return fmt.Errorf("%s: unexpected argument %q (usage: %s)", c.name, pos[n], c.synopsis)
	}
	return nil
}

// runArg is the run named positionally or by an older flag (-ckpt), not
// both; "" when neither.
func (c *cmdFlags) runArg(pos []string, flagName, flagValue string) (string, error) {
	if err := c.atMost(pos, 1); err != nil {
		return "", err
	}
	switch {
	case len(pos) == 1 && flagValue != "" && flagValue != pos[0]:
		return "", fmt.Errorf("%s: the run is given twice (%s and -%s %s)", c.name, pos[0], flagName, flagValue)
	case len(pos) == 1:
		return pos[0], nil
	}
	return flagValue, nil
}

// oneRun registers the flags of a command that reads one run: -ckpt (the
// older name of the positional RUN) and -device.
func (c *cmdFlags) oneRun() (ckpt, device *string) {
	ckpt = c.String("ckpt", "", "the run, as the positional RUN (kept for older scripts)")
	device = c.String("device", "auto", "auto (a GPU when CUDA can use one, else the CPU), cpu, cuda or cuda:N")
	return ckpt, device
}

// parseRun parses args and returns the one run they name (positionally or
// by -ckpt).
func (c *cmdFlags) parseRun(args []string, ckpt *string) (string, error) {
	pos, err := c.parse(args)
	if err != nil {
		return "", err
	}
	run, err := c.runArg(pos, "ckpt", *ckpt)
	if err == nil && run == "" {
		err = fmt.Errorf("%s: which run? (usage: %s)", c.name, c.synopsis)
	}
	return run, err
}

// subcommands is the help of a command made of subcommands (data,
// tokenizer): one line each.
func subcommands(w io.Writer, name string, subs [][2]string) {
	fmt.Fprintf(w, "usage: clm %s <subcommand> [flags]\n\nsubcommands:\n", name)
	for _, s := range subs {
		fmt.Fprintf(w, "  %-10s %s\n", s[0], s[1])
	}
	fmt.Fprintf(w, "\nclm %s <subcommand> -h shows a subcommand's flags.\n", name)
}

// isHelp reports whether args ask for help.
func isHelp(args []string) bool {
	return len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || strings.EqualFold(args[0], "help"))
}
