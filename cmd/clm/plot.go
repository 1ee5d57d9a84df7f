package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"clm/plot"
)

func init() {
	register("plot", "draw figures from run folders", runPlot)
}

// runPlot is `clm plot [-out DIR] [-format png,svg] RUN...`: it draws
// the loss, kurtosis, gains, max/median and entropy figures of the runs
// (see package plot) and prints the paths it wrote, one per line.
func runPlot(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "plot", "clm plot [flags] RUN...",
		"Draws the figures of one or more run folders: eval and training loss, and per run the kurtosis, max/median ratio, "+
			"attention entropy and gains per layer; with several runs, the outlier-features and int8 comparisons.",
		"clm plot runs/demo",
		"clm plot -out figures/fig2 runs/default runs/skipless runs/skipless-parallel",
		"clm plot -format pdf runs/op")
	out := fs.String("out", "", "output folder (default: RUN/figures for one run, ./figures for several)")
	formats := fs.String("format", strings.Join(plot.DefaultFormats, ","), "comma-separated formats: png, svg, pdf")
	runs, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return errors.New("plot: which runs? (usage: clm plot [flags] RUN...)")
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
