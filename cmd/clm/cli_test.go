package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCLIHelp: `clm help`, `clm -h` and every command's and subcommand's -h
// print their usage (with examples) on stdout and exit 0.
func TestCLIHelp(t *testing.T) {
	dir := t.TempDir()
	out, _, code := clm(t, dir, "help")
	if code != 0 {
		t.Fatalf("clm help: exit %d", code)
	}
	var cmds [][]string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(out, -1) {
		cmds = append(cmds, []string{m[1]})
	}
	if len(cmds) < 9 {
		t.Fatalf("clm help lists %d commands:\n%s", len(cmds), out)
	}
	for _, sub := range []string{"prepare", "inspect", "download", "cache"} {
		cmds = append(cmds, []string{"data", sub})
	}
	for _, sub := range []string{"train", "encode", "decode"} {
		cmds = append(cmds, []string{"tokenizer", sub})
	}
	cmds = append(cmds, nil) // clm -h: training
	for _, c := range cmds {
		out, stderr, code := clm(t, dir, append(c, "-h")...)
		name := strings.Join(append([]string{"clm"}, c...), " ")
		if code != 0 || stderr != "" || !strings.HasPrefix(out, "usage: clm") {
			t.Errorf("%s -h: exit %d, stderr %q, stdout:\n%s", name, code, stderr, out)
		}
		if len(c) != 1 || (c[0] != "data" && c[0] != "tokenizer") { // those list subcommands
			if !strings.Contains(out, "\nexamples:\n") {
				t.Errorf("%s -h shows no examples:\n%s", name, out)
			}
		} else if !strings.Contains(out, "subcommands:") {
			t.Errorf("%s -h lists no subcommands:\n%s", name, out)
		}
	}
}

// TestRunArgument: the commands that read a run take it as a positional
// RUN, before or after their flags, with -ckpt kept where it was; naming it
// twice differently is refused.
func TestRunArgument(t *testing.T) {
	dir := t.TempDir()
	cfg := write(t, filepath.Join(dir, "micro.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", cfg, "-run-dir", "run"); code != 0 {
		t.Fatalf("training the fixture run: %d\n%s", code, stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sample", "run", "-prompt", "def f(", "-n", "3"}, "def f("},
		{[]string{"sample", "-n", "3", "run"}, "def "},
		{[]string{"sample", "-ckpt", "run", "-n", "3"}, "def "},
		{[]string{"quant", "run", "-weights", "none", "-acts", "none"}, "int8 rel error"},
		{[]string{"plot", "-out", "figs", "run"}, "loss.png"},
		{[]string{"params", "run"}, "run (skipless)"},
		{[]string{"data", "inspect", "run"}, "train      200 documents"},
		{[]string{"config", "run"}, "preset = \"skipless\""},
	} {
		out, stderr, code := clm(t, dir, c.args...)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("clm %v: exit %d, stdout lacks %q:\n%s%s", c.args, code, c.want, out, stderr)
		}
	}
	_, stderr, code := clm(t, dir, "sample", "run", "-ckpt", "other")
	if code == 0 || !strings.Contains(stderr, "the run is given twice") {
		t.Errorf("a run named twice: exit %d, %q", code, stderr)
	}
	_, stderr, code = clm(t, dir, "sample", "run", "extra")
	if code == 0 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("two runs: exit %d, %q", code, stderr)
	}
}
