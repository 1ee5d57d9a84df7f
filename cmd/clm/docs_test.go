package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The commands of README.md and docs/*.md cannot rot: TestDocsCommands takes
// every command line of their ```sh blocks and
//
//   - runs the `clm` commands that only read (help, -h, version, params,
//     config, data cache) and those that read a run (sample, plot, data
//     inspect), on small runs trained under the names they use;
//   - has a training command line parsed by the real clm (`clm config` with
//     the same -config and -set), and a `-resume` one checked for its flags;
//   - dry-runs make targets (`make -n`);
//   - checks that every flag of a usage line ([-flag …]) exists;
//   - checks that the scripts named exist and are executable;
//   - and requires any other command (docker, torchrun, srun, rsync, and
//     clm commands that need a GPU or the Hub) to say so in its comment.

// docMarks are the comments that excuse a command from running here.
var docMarks = []string{"needs a GPU", "needs GPUs", "needs the Hub", "needs docker"}

// docCommand is one command line of a shell block.
type docCommand struct {
	where   string // file:line
	text    string // the command, continuations joined, comment removed
	comment string
}

func docCommands(t *testing.T) []docCommand {
	t.Helper()
	files, _ := filepath.Glob("../../docs/*.md")
	files = append([]string{"../../README.md"}, files...)
	fence := regexp.MustCompile("(?s)```(?:sh|bash|shell)\n(.*?)```")
	var out []docCommand
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fence.FindAllSubmatchIndex(b, -1) {
			line := 1 + strings.Count(string(b[:m[2]]), "\n")
			body := string(b[m[2]:m[3]])
			for _, l := range strings.Split(regexp.MustCompile(`\\\n\s*`).ReplaceAllString(body, " "), "\n") {
				where := filepath.Base(f) + ":" + strconv.Itoa(line)
				line++
				text, comment, _ := strings.Cut(l, "#")
				if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(text) == "" {
					continue
				}
				if strings.Contains(text, `"$(`) { // eval "$(…)": the # is not a comment there
					text, comment = l, ""
				}
				out = append(out, docCommand{where, strings.TrimSpace(text), comment})
			}
		}
	}
	return out
}

func TestDocsCommands(t *testing.T) {
	cmds := docCommands(t)
	if len(cmds) < 30 {
		t.Fatalf("found only %d commands in README.md and docs/", len(cmds))
	}
	// A work folder with the experiments and the runs the commands read.
	work := t.TempDir()
	if err := os.Symlink(mustAbs(t, "../../experiments"), filepath.Join(work, "experiments")); err != nil {
		t.Fatal(err)
	}
	micro := write(t, filepath.Join(work, "micro.toml"), microExperiment)
	trained := map[string]bool{}
	ran, parsed, marked := 0, 0, 0
	for _, c := range cmds {
		t.Run(c.where, func(t *testing.T) {
			for _, part := range strings.Split(c.text, "&&") {
				switch checkDocCommand(t, work, micro, trained, strings.Fields(strings.TrimSpace(part)), c.comment) {
				case "ran":
					ran++
				case "parsed":
					parsed++
				case "marked":
					marked++
				}
			}
		})
	}
	t.Logf("%d commands: %d ran, %d parsed or dry-run, %d marked as needing a GPU, the Hub or docker", len(cmds), ran, parsed, marked)
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkDocCommand checks one command (fields of a line) and says how.
func checkDocCommand(t *testing.T, work, micro string, trained map[string]bool, f []string, comment string) string {
	t.Helper()
	for len(f) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(f[0]) {
		f = f[1:] // environment assignments
	}
	if len(f) == 0 {
		return ""
	}
	isMarked := false
	for _, m := range docMarks {
		isMarked = isMarked || strings.Contains(comment, m)
	}
	for _, w := range f {
		if strings.HasPrefix(w, "scripts/") || strings.Contains(w, "(scripts/") {
			p := "../../" + strings.Trim(strings.TrimPrefix(w, `"$(`), `)"`)
			if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("%s names %s, which is not an executable script", strings.Join(f, " "), w)
			}
		}
	}
	switch {
	case f[0] == "make":
		args := append([]string{"-n", "-C", "../.."}, f[1:]...)
		if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
			t.Errorf("make -n %s: %v\n%s", strings.Join(f[1:], " "), err, out)
		}
		return "parsed"
	case f[0] == "bin/clm" || f[0] == "clm":
		return checkDocClm(t, work, micro, trained, f[1:], isMarked)
	case f[0] == "mkdir":
		return "ran"
	case len(f) > 1 && f[0] == "go" && f[1] == "test":
		checkDocGoTest(t, f)
		return "parsed"
	case f[0] == "eval" || strings.HasPrefix(f[0], "scripts/"):
		if !isMarked && !strings.Contains(strings.Join(f, " "), "scripts/") {
			t.Errorf("%q: not a command the docs test knows", strings.Join(f, " "))
		}
		return "parsed"
	}
	if !isMarked {
		t.Errorf("%q runs nowhere in the tests: mark it (%s) in its comment", strings.Join(f, " "), strings.Join(docMarks, ", "))
	}
	return "marked"
}

// checkDocGoTest checks that `go test PKG -run PATTERN …` names a package
// with a test that the pattern selects (`go test -list`).
func checkDocGoTest(t *testing.T, f []string) {
	t.Helper()
	pkg, pattern := "", ""
	for i := 2; i < len(f); i++ {
		switch {
		case f[i] == "-run" && i+1 < len(f):
			pattern, i = f[i+1], i+1
		case strings.HasPrefix(f[i], "./"):
			pkg = f[i]
		}
	}
	if pkg == "" || pattern == "" {
		t.Errorf("%q: a go test command in the docs names a package and a -run pattern", strings.Join(f, " "))
		return
	}
	cmd := exec.Command("go", "test", "-list", pattern, pkg)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "Test") {
		t.Errorf("%q: no test of %s matches %s: %v\n%s", strings.Join(f, " "), pkg, pattern, err, out)
	}
}

// checkDocClm checks a clm command line (args after "clm").
func checkDocClm(t *testing.T, work, micro string, trained map[string]bool, args []string, isMarked bool) string {
	t.Helper()
	sub := "train"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	if sub == "data" || sub == "tokenizer" {
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			sub, args = sub+" "+args[0], args[1:]
		}
	}
	usage := strings.Join(append(strings.Fields(sub), "-h"), " ")
	if sub == "train" {
		usage = "-h"
	}
	help, _, code := clm(t, work, strings.Fields(usage)...)
	if code != 0 {
		t.Errorf("clm %s: exit %d", usage, code)
		return ""
	}
	// Every flag written exists.
	synopsis := false
	for _, a := range args {
		if strings.HasPrefix(a, "[") || a == "RUN" || strings.HasSuffix(a, "...") || strings.HasSuffix(a, "...]") {
			synopsis = true
		}
		name := strings.TrimLeft(strings.Trim(a, "[]"), "-")
		if strings.HasPrefix(strings.Trim(a, "["), "-") && name != "" && !regexp.MustCompile(`^[0-9.]`).MatchString(name) {
			name, _, _ = strings.Cut(name, "=")
			if !strings.Contains(help, "\n  -"+name+" ") && !strings.Contains(help, "\n  -"+name+"\n") {
				t.Errorf("clm %s: no flag -%s (clm %s)", sub, name, usage)
			}
		}
	}
	switch {
	case synopsis || isMarked:
		return "parsed"
	case sub == "train":
		for i, a := range args {
			if a == "-resume" && i+1 < len(args) {
				return "parsed" // its flags exist; the run is the reader's
			}
		}
		cfg := []string{"config"}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-config" || args[i] == "-set" {
				cfg = append(cfg, args[i], args[i+1])
			}
		}
		if out, stderr, code := clm(t, work, cfg...); code != 0 {
			t.Errorf("clm %s: the experiment does not load: exit %d\n%s%s", strings.Join(args, " "), code, out, stderr)
		}
		return "parsed"
	}
	// A command that reads runs: train a small run under each name first.
	for _, a := range args {
		if strings.HasPrefix(a, "runs/") && !trained[a] {
			if _, stderr, code := clm(t, work, "-config", micro, "-run-dir", a, "-set", "train.max_steps=2"); code != 0 {
				t.Fatalf("training %s for the docs: %d\n%s", a, code, stderr)
			}
			trained[a] = true
		}
	}
	out, stderr, code := clm(t, work, append(strings.Fields(sub), unquote(args)...)...)
	if code != 0 {
		t.Errorf("clm %s %s: exit %d\n%s%s", sub, strings.Join(args, " "), code, out, stderr)
	}
	return "ran"
}

// unquote joins "double-quoted words" that the shell would keep whole.
func unquote(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, `"`) {
			for !strings.HasSuffix(a, `"`) || a == `"` {
				if i+1 >= len(args) {
					break
				}
				i++
				a += " " + args[i]
			}
			a = strings.Trim(a, `"`)
		}
		out = append(out, a)
	}
	return out
}
