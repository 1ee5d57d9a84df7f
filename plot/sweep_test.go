package plot

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteSpread draws sweep figures on numeric, log and categorical x
// axes, with points no seed finished (NaN) and a single seed (no spread):
// every format is written, the PNG decodes, and the SVG has the lines'
// names and more strokes with whiskers than without.
func TestWriteSpread(t *testing.T) {
	nan := math.NaN()
	two := []SpreadLine{
		{Name: "preset=default", X: []float64{1e-4, 1e-3, 1e-2}, Mean: []float64{3, 2.5, 2.8}, Min: []float64{2.9, 2.4, 2.7}, Max: []float64{3.1, 2.6, 2.9}},
		{Name: "preset=skipless", X: []float64{1e-4, 1e-3, 1e-2}, Mean: []float64{3.2, nan, 2.7}, Min: []float64{3.2, nan, 2.6}, Max: []float64{3.2, nan, 2.8}},
	}
	for _, tc := range []struct {
		name string
		fig  SpreadFigure
	}{
		{"log x", SpreadFigure{Stem: "loss-vs-lr", Title: "eval loss", XLabel: "train.lr", YLabel: "final_eval_loss", LogX: true, Lines: two}},
		{"linear x", SpreadFigure{Stem: "loss-vs-lr", XLabel: "train.lr", Lines: two}},
		{"categories", SpreadFigure{Stem: "loss-vs-preset", Categories: []string{"default", "skipless-parallel"},
			Lines: []SpreadLine{{Name: "lr=0.001", X: []float64{0, 1}, Mean: []float64{2, 3}, Min: []float64{1.5, 3}, Max: []float64{2.5, 3}}}}},
		{"one line, no name", SpreadFigure{Stem: "seeds", Lines: []SpreadLine{{X: []float64{1}, Mean: []float64{2}, Min: []float64{1}, Max: []float64{3}}}}},
		{"nothing finished", SpreadFigure{Stem: "none", Lines: []SpreadLine{{Name: "a", X: []float64{1, 2}, Mean: []float64{nan, nan}, Min: []float64{nan, nan}, Max: []float64{nan, nan}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			paths, err := WriteSpread(tc.fig, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 2 {
				t.Fatalf("wrote %v", paths)
			}
			f, err := os.Open(filepath.Join(dir, tc.fig.Stem+".png"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := png.Decode(f); err != nil {
				t.Errorf("png: %v", err)
			}
			svg, _ := os.ReadFile(filepath.Join(dir, tc.fig.Stem+".svg"))
			for _, l := range tc.fig.Lines {
				if l.Name != "" && !strings.Contains(string(svg), l.Name) {
					t.Errorf("the svg does not name %q", l.Name)
				}
			}
		})
	}
	// The whiskers are drawn: the same figure without spread has fewer strokes.
	flat := SpreadFigure{Stem: "flat", Lines: []SpreadLine{{Name: "a", X: []float64{1, 2}, Mean: []float64{2, 3}, Min: []float64{2, 3}, Max: []float64{2, 3}}}}
	spread := flat
	spread.Stem, spread.Lines = "spread", []SpreadLine{{Name: "a", X: []float64{1, 2}, Mean: []float64{2, 3}, Min: []float64{1, 2}, Max: []float64{3, 4}}}
	dir := t.TempDir()
	for _, f := range []SpreadFigure{flat, spread} {
		if _, err := WriteSpread(f, dir, []string{"svg"}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "flat.svg"))
	b, _ := os.ReadFile(filepath.Join(dir, "spread.svg"))
	if strings.Count(string(b), "<path") <= strings.Count(string(a), "<path") {
		t.Errorf("the spread adds no strokes: %d paths against %d", strings.Count(string(b), "<path"), strings.Count(string(a), "<path"))
	}
	if _, err := WriteSpread(flat, dir, []string{"gif"}); err == nil {
		t.Error("an unknown format was accepted")
	}
}
