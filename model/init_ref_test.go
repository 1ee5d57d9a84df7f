package model_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"clm/internal/testkit/pyref"
	"clm/model"
	"clm/torch"
)

// initOverrides is the size of the init comparison: 3 layers of width 128
// (so that the smallest random matrix, 128×128, has 16384 entries), 4
// heads, 64 positions, vocabulary 512.
var initOverrides = map[string]any{
	"n_layer": int64(3), "n_embd": int64(128), "n_head": int64(4), "context_length": int64(32),
	"n_positions": int64(64), "vocab_size": int64(512),
}

// initVariants are the init paths that no preset takes: W_init orthogonal
// or normal(0, 1/√d), both tie_valproj_init modes, a plain identity value,
// and every *_init_std key.
var initVariants = []struct {
	name, preset string
	set          map[string]any
}{
	{"reparam-orth", "skipless", map[string]any{"val_init_type": "orth", "value_resid_gain": 0.5}},
	{"reparam-normal", "skipless", map[string]any{"val_init_type": "normal", "value_resid_gain": 0.5}},
	{"tied-last-block", "skipless", map[string]any{"val_init_type": "orth", "value_resid_gain": 0.3, "tie_valproj_init": "last_block"}},
	{"tied-all-blocks", "skipless", map[string]any{"val_init_type": "normal", "value_resid_gain": 0.3, "tie_valproj_init": "all_blocks"}},
	{"plain-id", "default", map[string]any{"val_init_type": "id"}},
	{"init-stds", "default", map[string]any{"query_init_std": 0.05, "key_init_std": 0.01, "val_proj_init_std": 0.1, "mlp_proj_init_std": 0.002}},
}

// initCase is one configuration of TestInitReference.
type initCase struct {
	name string
	cfg  model.Config
	ref  string // the reference's init, safetensors
}

// TestInitReference compares Model.Init, for every preset and initVariants,
// with scripts/reference/model.py's init (the original's modules) from an
// independent seed, block by block (a tensor, or W^Q and W^K of qk_attn):
// the same names and shapes; blocks that the reference initialises to fixed
// values (zeros, ones, gains, identities) equal exactly; random blocks agree
// in mean, std and kurtosis within initK standard errors of their sizes,
// are orthogonal exactly when the reference's are, and are equal or
// transposed to the same other blocks (tied inits); the skip-path product
// of the W_init matrices is the identity exactly when the reference's is.
func TestInitReference(t *testing.T) {
	pyref.Require(t)
	var cases []initCase
	var jobs []map[string]any
	add := func(name, preset string, set map[string]any) {
		all := map[string]any{}
		for _, m := range []map[string]any{initOverrides, set} {
			for k, v := range m {
				all[k] = v
			}
		}
		cfg, err := model.PresetWith(preset, all)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		js, err := cfg.JSON()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		c := initCase{name: name, cfg: cfg, ref: filepath.Join(dir, "ref.safetensors")}
		if err := os.WriteFile(filepath.Join(dir, "cfg.json"), js, 0o644); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
		jobs = append(jobs, map[string]any{"cmd": "init", "config": filepath.Join(dir, "cfg.json"), "seed": 12, "out": c.ref})
	}
	for _, p := range model.PresetNames() {
		add(p, p, nil)
	}
	for _, v := range initVariants {
		add(v.name, v.preset, v.set)
	}
	pyref.RunJobs(t, "model_jobs.py", jobs)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := goInitState(t, c.cfg, 11)
			want := loadInitState(t, c.ref)
			compareInit(t, got, want, c.cfg.NLayer)
		})
	}
}

// initTensor is a state tensor's values (as float64) and shape.
type initTensor struct {
	name  string
	shape []int64
	v     []float64
}

// goInitState builds cfg's model, runs Init from seed and copies its state.
func goInitState(t *testing.T, cfg model.Config, seed uint64) []initTensor {
	t.Helper()
	m, err := model.New(cfg, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	torch.ManualSeed(seed)
	if err := m.Init(); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Params().All()); n != len(m.State()) {
		t.Fatalf("Params() has %d tensors, State() %d", n, len(m.State()))
	}
	return initTensors(m.State())
}

// loadInitState reads the reference's init.
func loadInitState(t *testing.T, path string) []initTensor {
	t.Helper()
	named, _, err := torch.LoadSafetensors(path, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range named {
			n.Tensor.Free()
		}
	}()
	return initTensors(named)
}

func initTensors(named []torch.Named) []initTensor {
	out := make([]initTensor, len(named))
	for i, n := range named {
		f := n.Tensor.Float32s()
		v := make([]float64, len(f))
		for j, x := range f {
			v[j] = float64(x)
		}
		out[i] = initTensor{name: n.Name, shape: n.Tensor.Shape(), v: v}
	}
	return out
}

// compareInit runs every check of TestInitReference on one configuration.
func compareInit(t *testing.T, got, want []initTensor, layers int) {
	t.Helper()
	byName := map[string]initTensor{}
	for _, x := range got {
		byName[x.name] = x
	}
	var gb, wb []initBlock
	for _, w := range want {
		g, ok := byName[w.name]
		if !ok || !slices.Equal(g.shape, w.shape) {
			t.Errorf("%s: reference shape %v, Go %v (present %v)", w.name, w.shape, g.shape, ok)
			continue
		}
		delete(byName, w.name)
		gb, wb = append(gb, blocks(g)...), append(wb, blocks(w)...)
	}
	for name := range byName {
		t.Errorf("%s: not in the reference's state", name)
	}
	random := 0
	for i := range wb {
		if compareBlock(t, gb[i], wb[i]) {
			random++
		}
	}
	if g, w := tiedPairs(gb), tiedPairs(wb); !slices.Equal(g, w) {
		t.Errorf("tied blocks: Go %v, reference %v", g, w)
	}
	if g, w := skipPathIdentity(got, layers), skipPathIdentity(want, layers); g != w {
		t.Errorf("skip-path product of W_init is the identity: Go %v, reference %v", g, w)
	}
	t.Logf("%d blocks, %d random; tied %v; skip path identity %v", len(wb), random, tiedPairs(wb), skipPathIdentity(want, layers))
}

// initBlock is a tensor, or a part of one with its own init, as a rows×cols
// matrix (1-D and gain tensors are one row).
type initBlock struct {
	name       string
	rows, cols int
	v          []float64
}

// blocks splits qk_attn.weight [d, 2d] into W^Q (columns [0, d)) and W^K
// (columns [d, 2d)), which query_init_std and key_init_std initialise
// apart; any other tensor is one block.
func blocks(x initTensor) []initBlock {
	if len(x.shape) != 2 {
		return []initBlock{{x.name, 1, len(x.v), x.v}}
	}
	rows, cols := int(x.shape[0]), int(x.shape[1])
	if !(len(x.name) > 20 && x.name[len(x.name)-20:] == ".attn.qk_attn.weight") {
		return []initBlock{{x.name, rows, cols, x.v}}
	}
	half := func(off int, label string) initBlock {
		v := make([]float64, 0, rows*cols/2)
		for r := range rows {
			v = append(v, x.v[r*cols+off:r*cols+off+cols/2]...)
		}
		return initBlock{x.name + label, rows, cols / 2, v}
	}
	return []initBlock{half(0, "[W^Q]"), half(cols/2, "[W^K]")}
}

// initK is the number of standard errors allowed between Go's and the
// reference's block statistics. The two inits are independent samples;
// with about 1500 comparisons over all cases, a two-sided 5σ bound is
// exceeded by chance with probability < 1e-3 in all (P(|Z| > 5) ≈ 5.7e-7
// each), while a 5% change of a std is > 6 SE on every matrix here
// (n ≥ 16384).
const initK = 5

// orthTol bounds max|WᵀW − I| of an orthogonal float32 matrix (QR
// rounding, ~1e-6 at width 128); a random normal matrix of these sizes is
// ≥ 0.2 away.
const orthTol = 1e-4

// compareBlock checks one block and reports whether the reference's is
// random (not fixed values).
func compareBlock(t *testing.T, g, w initBlock) bool {
	t.Helper()
	if !isRandom(w.v) {
		for i := range w.v {
			if g.v[i] != w.v[i] {
				t.Errorf("%s: element %d is %v, reference %v (a fixed init)", w.name, i, g.v[i], w.v[i])
				break
			}
		}
		return false
	}
	n := float64(len(w.v))
	sg, sw := momentsOf(g.v), momentsOf(w.v)
	checks := []struct {
		what      string
		got, want float64
		se        float64 // standard error of the difference of two samples
	}{
		{"mean", sg.mean, sw.mean, sw.std * math.Sqrt(2/n)},
		{"std", sg.std, sw.std, sw.std * math.Sqrt((sw.kurt+2)/(2*n))},
		{"excess kurtosis", sg.kurt, sw.kurt, math.Sqrt(48 / n)},
	}
	for _, c := range checks {
		if !(math.Abs(c.got-c.want) <= initK*c.se) {
			t.Errorf("%s: %s %.6g, reference %.6g (|Δ| %.3g > %d SE = %.3g)", w.name, c.what, c.got, c.want,
				math.Abs(c.got-c.want), initK, initK*c.se)
		}
	}
	if w.rows >= 2 && w.cols >= 2 {
		og, ow := orthDev(g) < orthTol, orthDev(w) < orthTol
		if og != ow {
			t.Errorf("%s: orthogonal %v (max|WᵀW−I| %.3g), reference %v (%.3g)", w.name, og, orthDev(g), ow, orthDev(w))
		}
	}
	return true
}

// isRandom reports whether v holds more than two distinct values (a fixed
// init has one, or two for an identity).
func isRandom(v []float64) bool {
	seen := map[float64]bool{}
	for _, x := range v {
		seen[x] = true
		if len(seen) > 2 {
			return true
		}
	}
	return false
}

// moments are a sample's mean, std (1/n) and excess kurtosis.
type moments struct{ mean, std, kurt float64 }

func momentsOf(v []float64) moments {
	var s float64
	for _, x := range v {
		s += x
	}
	n := float64(len(v))
	mean := s / n
	var m2, m4 float64
	for _, x := range v {
		d := (x - mean) * (x - mean)
		m2 += d
		m4 += d * d
	}
	m2, m4 = m2/n, m4/n
	return moments{mean, math.Sqrt(m2), m4/(m2*m2) - 3}
}

// orthDev is max|WᵀW − I| (WWᵀ when b is wide): 0 for an orthogonal (or
// semi-orthogonal) matrix.
func orthDev(b initBlock) float64 {
	at := func(r, c int) float64 { return b.v[r*b.cols+c] }
	k, inner := b.cols, b.rows
	if b.rows < b.cols {
		k, inner = b.rows, b.cols
		at = func(r, c int) float64 { return b.v[c*b.cols+r] }
	}
	worst := 0.0
	for i := range k {
		for j := i; j < k; j++ {
			s := 0.0
			for r := range inner {
				s += at(r, i) * at(r, j)
			}
			if i == j {
				s--
			}
			worst = math.Max(worst, math.Abs(s))
		}
	}
	return worst
}

// tiedPairs lists the random 2-D blocks that equal another ("a = b") or
// its transpose ("a = bᵀ").
func tiedPairs(bs []initBlock) []string {
	var out []string
	for i, a := range bs {
		if a.rows < 2 || !isRandom(a.v) {
			continue
		}
		for _, b := range bs[i+1:] {
			if b.rows < 2 || len(b.v) != len(a.v) {
				continue
			}
			if a.rows == b.rows && slices.Equal(a.v, b.v) {
				out = append(out, a.name+" = "+b.name)
			}
			if a.rows == b.cols && transposed(a, b) {
				out = append(out, a.name+" = "+b.name+"ᵀ")
			}
		}
	}
	return out
}

func transposed(a, b initBlock) bool {
	for r := range a.rows {
		for c := range a.cols {
			if a.v[r*a.cols+c] != b.v[c*b.cols+r] {
				return false
			}
		}
	}
	return true
}

// skipPathIdentity reports whether each of the L layers has W_init
// buffers for its value and projection and their product
// V₀P₀V₁P₁…V_{L−1}P_{L−1} is the identity (within orthTol·L), which
// tie_valproj_init = last_block makes so for orthogonal inits.
func skipPathIdentity(state []initTensor, layers int) bool {
	byName := map[string]initTensor{}
	for _, x := range state {
		byName[x.name] = x
	}
	var prod []float64
	d := 0
	for i := range layers {
		v, okV := byName[fmt.Sprintf("transformer.h.%d.attn.v_attn.id", i)]
		p, okP := byName[fmt.Sprintf("transformer.h.%d.attn.c_proj.id", i)]
		if !okV || !okP {
			return false
		}
		if prod == nil {
			d, prod = int(v.shape[0]), v.v
		} else {
			prod = matmul(prod, v.v, d)
		}
		prod = matmul(prod, p.v, d)
	}
	worst := 0.0
	for r := range d {
		for c := range d {
			want := 0.0
			if r == c {
				want = 1
			}
			worst = math.Max(worst, math.Abs(prod[r*d+c]-want))
		}
	}
	return prod != nil && worst < orthTol*float64(layers)
}

// matmul is a·b for d×d row-major matrices.
func matmul(a, b []float64, d int) []float64 {
	out := make([]float64, d*d)
	for r := range d {
		for k := range d {
			x := a[r*d+k]
			for c := range d {
				out[r*d+c] += x * b[k*d+c]
			}
		}
	}
	return out
}
