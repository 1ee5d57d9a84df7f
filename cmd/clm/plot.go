package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"clm/plot"
)

func init() {
	register("plot", "draw figures from run folders", runPlot)
}

// runPlot is `clm plot [-out DIR] [-format png,svg] RUN_DIR...`: it draws
// the loss, kurtosis, gains, max/median and entropy figures of the runs
// (see package plot) and prints the paths it wrote, one per line.
func runPlot(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("clm plot", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	out := fs.String("out", "", "output folder (default: RUN_DIR/figures for one run, ./figures for several)")
	formats := fs.String("format", strings.Join(plot.DefaultFormats, ","), "comma-separated formats: png, svg, pdf")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: clm plot [-out DIR] [-format png,svg] RUN_DIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	runs := fs.Args()
	if len(runs) == 0 {
		fs.Usage()
		return errUsage
	}
	dir := *out
	if dir == "" {
		dir = "figures"
		if len(runs) == 1 {
			dir = filepath.Join(runs[0], "figures")
		}
	}
	paths, err := plot.Figures(runs, dir, strings.Split(*formats, ","))
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return err
}
