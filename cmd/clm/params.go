package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"clm/model"
)

func init() {
	register("params", "count the parameters of every preset (the paper's 18×768 setting by default)", runParams)
}

func runParams(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("params", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var sets setFlags
	fs.Var(&sets, "set", "override a model key, e.g. -set n_layer=12 (repeatable)")
	presets := fs.String("preset", "", "comma-separated presets (default: all)")
	exact := fs.Bool("exact", false, "print exact counts instead of millions")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	names := model.PresetNames()
	if *presets != "" {
		names = strings.Split(*presets, ",")
	}
	overrides := map[string]any{"n_layer": int64(18)} // the paper's depth
	for k, v := range sets.values {
		overrides[strings.TrimPrefix(k, "model.")] = v
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "preset\tlayers\twidth\tvocab\tparameters\ttrainable\t")
	for _, n := range names {
		c, err := model.PresetWith(n, overrides)
		if err != nil {
			return err
		}
		total, trainable := c.ParamCount()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t\n", n, c.NLayer, c.NEmbd, c.VocabSize,
			count(total, *exact), count(trainable, *exact))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nCounted as the original prints them: frozen zero biases included, the tied head once, W_init buffers excluded.")
	return nil
}

// count formats a parameter count in millions, or exactly.
func count(n int64, exact bool) string {
	if exact {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}
