package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// floors is the picture of docs/architecture.md as data: for each
// production package, the packages of this module it may import. An
// import that is not listed fails TestFloors, so the picture and the code
// cannot drift apart. Packages under internal/ (not internal/testkit) are
// the ground floor, which any package may use.
var floors = map[string][]string{
	"cmd/configdoc": {"train", "model"},
	"cmd/clm":       {"train", "quant", "plot", "sweep", "hf", "model", "data", "data/bpe", "data/corpus", "runlog", "torch"},
	"train":         {"stats", "optim", "model", "data", "data/corpus", "hf", "hub", "runlog", "safetensors", "torch"},
	"quant":         {"model", "stats", "runlog", "torch"},
	"stats":         {"runlog", "torch"},
	"optim":         {"torch"},
	"model":         {"torch"},
	"plot":          {"runlog"},
	"sweep":         {"runlog"},
	"hf":            {"hub", "safetensors"},
	"data":          {"data/bpe", "data/corpus", "data/nprand", "hub"},
	"data/bpe":      {},
	"data/corpus":   {},
	"data/nprand":   {},
	"hub":           {},
	"runlog":        {"tensorboard"},
	"torch":         {"safetensors"},
	"safetensors":   {},
	"tensorboard":   {},
}

// torchFree are the packages that must never reach libtorch, not even
// through another package.
var torchFree = []string{"hf", "data", "data/bpe", "data/corpus", "data/nprand", "hub", "runlog", "plot", "sweep", "safetensors", "tensorboard"}

// testOnly are the helpers only tests may import.
func testOnly(pkg string) bool {
	return strings.HasPrefix(pkg, "internal/testkit/") || pkg == "torch/torchtest" || pkg == "hub/hubtest"
}

type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// TestFloors: every production import is one the floors allow, the
// torch-free packages reach no cgo binding, and no production package
// imports a test-only helper.
func TestFloors(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "clm/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "clm/"
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := map[string]bool{}
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, mod)
		seen[name] = true
		if testOnly(name) {
			continue
		}
		allowed, listed := floors[name]
		ground := strings.HasPrefix(name, "internal/")
		if !listed && !ground {
			t.Errorf("%s: a package the floors do not place (add it to floors and to docs/architecture.md)", name)
			continue
		}
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, mod)
			switch {
			case !ok:
			case testOnly(dep):
				t.Errorf("%s imports the test-only %s", name, dep)
			case strings.HasPrefix(dep, "internal/"): // the ground floor
			case !slices.Contains(allowed, dep):
				t.Errorf("%s imports %s, which the floors do not allow (docs/architecture.md)", name, dep)
			}
		}
		if slices.Contains(torchFree, name) {
			for _, d := range p.Deps {
				if d == mod+"torch" {
					t.Errorf("%s reaches clm/torch", name)
				}
			}
		}
	}
	for name := range floors {
		if !seen[name] {
			t.Errorf("floors lists %s, which does not exist", name)
		}
	}
}

// maxFuncLines is the most lines a production function may take: one that
// does not fit on a screen is split into named parts.
const maxFuncLines = 80

// TestFunctionsFitOnAScreen: no production function of the module is longer
// than maxFuncLines.
func TestFunctionsFitOnAScreen(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "build") || n == "testdata" || n == "runs") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			from, to := fset.Position(fn.Pos()), fset.Position(fn.End())
			if n := to.Line - from.Line + 1; n > maxFuncLines {
				rel, _ := filepath.Rel(root, p)
				t.Errorf("%s:%d: %s is %d lines, more than %d", rel, from.Line, fn.Name.Name, n, maxFuncLines)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
