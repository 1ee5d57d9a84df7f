// Command configdoc writes docs/configuration.md: the page's prose from
// configuration.md.tmpl, and one table per configuration struct from the
// structs' doc comments and defaults (internal/configdoc). Run it from the
// repository root after changing a key or its comment (`make docs`); its
// test fails while the page is stale.
package main

import (
	_ "embed"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"clm/internal/atomicfile"
	"clm/internal/configdoc"
	"clm/model"
	"clm/train"
)

//go:embed configuration.md.tmpl
var page string

// Page is the path of the generated page, relative to the repository root.
const Page = "docs/configuration.md"

// table is one struct the page documents: its package folder and the
// defaults a run starts from.
type table struct {
	dir      string
	defaults any
}

// tables are the page's tables by the name its template uses.
func tables() map[string]table {
	d := train.Defaults()
	return map[string]table{
		"model.Config":        {"model", model.Default()},
		"train.Options":       {"train", d.Train},
		"train.OptimOptions":  {"train", d.Train.Optim},
		"train.DataOptions":   {"train", d.Data},
		"train.ReportOptions": {"train", d.Report},
	}
}

// render is the page, with the struct sources read under root.
func render(root string) (string, error) {
	all := tables()
	funcs := template.FuncMap{"table": func(name string) (string, error) {
		t, ok := all[name]
		if !ok {
			return "", fmt.Errorf("no table %q", name)
		}
		_, typ, _ := strings.Cut(name, ".")
		s, err := configdoc.Table(filepath.Join(root, t.dir), typ, t.defaults)
		return strings.TrimSuffix(s, "\n"), err
	}}
	tmpl, err := template.New("configuration.md.tmpl").Funcs(funcs).Parse(page)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

func main() {
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	s, err := render(*root)
	if err == nil {
		err = atomicfile.Write(filepath.Join(*root, Page), []byte(s), 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "configdoc: %v\n", err)
		os.Exit(1)
	}
}
