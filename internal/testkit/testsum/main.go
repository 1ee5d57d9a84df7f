// Command testsum reads `go test -json` output on standard input, prints each
// package's result and the output of failed tests, and ends with the line
// "N passed, N failed, N skipped" counting every test and subtest. It exits
// non-zero if any test or package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	os.Exit(run())
}

func run() int {
	var passed, failed, skipped int
	output := map[string][]string{} // package/test → lines
	var failures []string
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// Not JSON: build errors and the like go straight through.
			fmt.Println(string(line))
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if e.Test != "" || strings.HasPrefix(e.Output, "FAIL") || strings.Contains(e.Output, "panic") ||
				strings.HasPrefix(e.Output, "#") || strings.Contains(e.Output, ".go:") {
				output[key] = append(output[key], e.Output)
			}
		case "pass":
			if e.Test != "" {
				passed++
			} else {
				fmt.Printf("ok   %-40s %6.1fs\n", e.Package, e.Elapsed)
			}
			delete(output, key)
		case "skip":
			if e.Test != "" {
				skipped++
				for _, l := range output[key] {
					if strings.Contains(l, "SKIP") || strings.Contains(l, ".go:") {
						fmt.Printf("skip %s: %s", e.Test, strings.TrimSpace(l)+"\n")
						break
					}
				}
			} else {
				fmt.Printf("--   %-40s (no tests)\n", e.Package)
			}
			delete(output, key)
		case "fail":
			if e.Test != "" {
				failed++
				failures = append(failures, key)
			} else {
				pkgFailed = true
				fmt.Printf("FAIL %-40s %6.1fs\n", e.Package, e.Elapsed)
				if len(output[key]) > 0 {
					failures = append(failures, key)
				}
			}
		}
	}
	sort.Strings(failures)
	for _, k := range failures {
		fmt.Printf("\n--- FAIL: %s\n%s", k, strings.Join(output[k], ""))
	}
	fmt.Printf("\n%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed {
		return 1
	}
	return 0
}
