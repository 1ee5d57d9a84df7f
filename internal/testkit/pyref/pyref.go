// Package pyref locates the Python reference environment that `make setup`
// installs (PyTorch, Hugging Face tokenizers, pyarrow, ...) and runs reference
// scripts from tests and benchmarks. clm itself never needs Python.
//
// Tests that need the reference call Require: it skips the test when the
// reference is missing, unless CLM_REQUIRE_REFERENCE=1 (set by CI and by
// `make test`), in which case a missing reference fails the test.
package pyref

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod, found by walking up from the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("pyref: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Python returns the reference interpreter: $CLM_PYTHON if set, else the
// virtualenv that `make setup` links at .clm/venv.
func Python() (string, error) {
	if p := os.Getenv("CLM_PYTHON"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".clm", "venv", "bin", "python")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("pyref: no reference Python at %s (run `make setup`, or set CLM_PYTHON)", p)
	}
	return p, nil
}

// Asset returns the path of a file that `make setup` placed under .clm/
// (for example "gpt2/vocab.bpe").
func Asset(rel string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".clm", rel)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("pyref: missing %s (run `make setup`)", p)
	}
	return p, nil
}

// Required reports whether missing reference pieces must fail tests instead
// of skipping them.
func Required() bool { return os.Getenv("CLM_REQUIRE_REFERENCE") == "1" }

// Require returns the reference interpreter, or skips (fails when Required)
// the test if there is none.
func Require(tb testing.TB) string {
	tb.Helper()
	p, err := Python()
	if err != nil {
		missing(tb, err)
	}
	return p
}

// RequireAsset is Asset for tests, with Require's skip/fail rule.
func RequireAsset(tb testing.TB, rel string) string {
	tb.Helper()
	p, err := Asset(rel)
	if err != nil {
		missing(tb, err)
	}
	return p
}

func missing(tb testing.TB, err error) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%v", err)
	}
	tb.Skipf("%v", err)
}

// Script returns the absolute path of a file under scripts/reference/.
func Script(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "scripts", "reference", name), nil
}

// Run runs scripts/reference/<script> with args under the reference Python
// and returns its standard output. Standard error is included in the error.
func Run(tb testing.TB, script string, args ...string) []byte {
	tb.Helper()
	return RunEnv(tb, nil, script, args...)
}

// RunEnv is Run with extra environment variables ("KEY=value").
func RunEnv(tb testing.TB, env []string, script string, args ...string) []byte {
	tb.Helper()
	py := Require(tb)
	path, err := Script(script)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{path}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(append(os.Environ(), "PYTHONHASHSEED=0"), env...)
	if err := cmd.Run(); err != nil {
		tb.Fatalf("reference %s %v: %v\n%s", script, args, err, stderr.String())
	}
	return stdout.Bytes()
}

// RunJobs writes jobs as JSON to a temporary file and runs
// scripts/reference/<script> on it (the batch form of the *_jobs.py scripts:
// one Python start for many cases); it returns the script's standard output.
func RunJobs(tb testing.TB, script string, jobs any) []byte {
	tb.Helper()
	b, err := json.Marshal(jobs)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "jobs.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return Run(tb, script, path)
}
