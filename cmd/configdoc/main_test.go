package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPageIsCurrent: docs/configuration.md is what configdoc writes from
// today's structs, so a key added or a comment changed without running
// `make docs` fails here.
func TestPageIsCurrent(t *testing.T) {
	want, err := render("../..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("../..", Page))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) == want {
		return
	}
	g, w := strings.Split(string(got), "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("%s is stale (run `make docs`): line %d is\n  %s\nand should be\n  %s", Page, i+1, gl, wl)
		}
	}
}

// TestEveryTableIsOnThePage: the template places every documented struct.
func TestEveryTableIsOnThePage(t *testing.T) {
	for name := range tables() {
		if !strings.Contains(page, `{{table "`+name+`"}}`) {
			t.Errorf("configuration.md.tmpl has no table %s", name)
		}
	}
}
