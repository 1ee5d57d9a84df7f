package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"clm/model"
	"clm/train"
)

func init() {
	register("params", "count the parameters of every preset (the paper's 18×768), of an experiment or of a run", runParams)
}

func runParams(args []string, stdout io.Writer) error {
	fs := newFlags(stdout, "params", "clm params [flags] [RUN]",
		"Counts parameters as the original prints them: of every preset at the paper's 18 layers × 768, of an experiment "+
			"(-config, with -set), or of a run's model (RUN).",
		"clm params", "clm params -preset default,skipless -set model.n_layer=6", "clm params -config experiments/op.toml", "clm params runs/demo")
	var sets setFlags
	fs.Var(&sets, "set", "override a model key, e.g. -set n_layer=12 or -set model.n_layer=12 (repeatable)")
	presets := fs.String("preset", "", "comma-separated presets (default: all)")
	configPath := fs.String("config", "", "count the model of this experiment file instead")
	exact := fs.Bool("exact", false, "print exact counts instead of millions")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := fs.atMost(pos, 1); err != nil {
		return err
	}
	type row struct {
		name string
		cfg  model.Config
	}
	var rows []row
	switch {
	case len(pos) == 1 || *configPath != "":
		path, name := *configPath, *configPath
		if len(pos) == 1 {
			if path != "" {
				return fmt.Errorf("params: give -config FILE or a RUN, not both")
			}
			path, name = train.RunConfig(pos[0]), pos[0]
		}
		exp, err := train.Load(path, modelSets(sets.values, true))
		if err != nil {
			return err
		}
		rows = append(rows, row{name + " (" + exp.Preset + ")", exp.Model})
	default:
		names := model.PresetNames()
		if *presets != "" {
			names = strings.Split(*presets, ",")
		}
		overrides := map[string]any{"n_layer": int64(18)} // the paper's depth
		for k, v := range modelSets(sets.values, false) {
			overrides[k] = v
		}
		for _, n := range names {
			c, err := model.PresetWith(n, overrides)
			if err != nil {
				return err
			}
			rows = append(rows, row{n, c})
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tlayers\twidth\tvocab\tparameters\ttrainable\t")
	for _, r := range rows {
		total, trainable := r.cfg.ParamCount()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t\n", r.name, r.cfg.NLayer, r.cfg.NEmbd, r.cfg.VocabSize,
			count(total, *exact), count(trainable, *exact))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nCounted as the original prints them: frozen zero biases included, the tied head once, W_init buffers excluded.")
	return nil
}

// modelSets are the -set overrides of model keys, "model.n_layer" or
// "n_layer": keyed "model.…" for an experiment (qualified), bare for a
// preset.
func modelSets(sets map[string]any, qualified bool) map[string]any {
	out := map[string]any{}
	for k, v := range sets {
		k = strings.TrimPrefix(k, "model.")
		if qualified {
			k = "model." + k
		}
		out[k] = v
	}
	return out
}

// count formats a parameter count in millions, or exactly.
func count(n int64, exact bool) string {
	if exact {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}
