package torch

import (
	"fmt"
	"math"
	"runtime"
	"testing"
)

// The fused combine and shaped-attention epilogue against the composite ops
// they replace, forward and backward (every input's gradient, under a random
// upstream gradient).
//
// Tolerances are relative to max(1, max|composite|), as allClose. fp64 and
// fp32 must agree to 1e-12 and 1e-6. In bf16 both the fused op and the
// composite round every intermediate to bf16 (unit roundoff u = 2⁻⁸); they
// make the same roundings except the order in which the gain gradients are
// summed, so they may differ by one bf16 rounding of the result: at most
// 2u = 2⁻⁷ relative. On the CPU the forward and the inputs' gradients must
// be bitwise the composite's in every mode (the kernels make its roundings in
// its order); only the gain gradients' sums may differ. Each bf16 mode also checks both against an fp64 truth
// (the composite on the same inputs in fp64): the fused op may be no further
// from it than the composite plus one rounding (u).

// A dtype mode: the dtype of the terms (and y, v), of the gains, and whether
// the ops run under CPU/CUDA autocast to bf16 as in mixed-precision training.
type fusedMode struct {
	name     string
	termDT   DType
	gainDT   DType
	autocast bool
	tol      float64
}

const bf16U = 1.0 / 256 // bf16 unit roundoff 2⁻⁸

var fusedModes = []fusedMode{
	{"fp64", Float64, Float64, false, 1e-12},
	{"fp32", Float32, Float32, false, 1e-6},
	{"bf16", BFloat16, BFloat16, false, 2 * bf16U},
	// Autocast: bf16 activations, fp32 gains (the parameters): the products
	// and the result are fp32.
	{"autocast_bf16", BFloat16, Float32, true, 2 * bf16U},
}

// fusedLeaf is a random leaf tensor in dt that requires grad when grad is set.
func fusedLeaf(shape []int64, dt DType, dev Device, grad bool) *Tensor {
	return Randn(shape, Float64, CPU).To(dt, dev).SetRequiresGrad(grad)
}

// runMode runs f under the mode's autocast, if any.
func runMode(m fusedMode, dev Device, f func()) {
	if m.autocast {
		Autocast(dev, BFloat16, f)
		return
	}
	f()
}

// gradsOf returns the accumulated gradients of leaves (nil where none) and
// drops them for the next run.
func gradsOf(leaves []*Tensor) []*Tensor {
	gs := make([]*Tensor, len(leaves))
	for i, l := range leaves {
		if l.RequiresGrad() {
			gs[i] = l.Grad()
			l.ZeroGrad()
		}
	}
	return gs
}

// scaledErr is max|a−b| / max(1, max|b|) (allClose's measure).
func scaledErr(a, b *Tensor) float64 {
	av, bv := a.ToDType(Float64).Contiguous().Float64s(), b.ToDType(Float64).Contiguous().Float64s()
	scale, m := 1.0, 0.0
	for i := range bv {
		scale = math.Max(scale, math.Abs(bv[i]))
		d := math.Abs(av[i] - bv[i])
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		m = math.Max(m, d)
	}
	return m / scale
}

// fusedRun is one evaluation: the output and the gradients of the leaves.
type fusedRun struct {
	out   *Tensor
	grads []*Tensor
}

// tensors is the output, then the gradients.
func (r fusedRun) tensors() []*Tensor { return append([]*Tensor{r.out}, r.grads...) }

func evalRun(m fusedMode, dev Device, leaves []*Tensor, gout *Tensor, f func() *Tensor) fusedRun {
	var out *Tensor
	runMode(m, dev, func() { out = f() })
	out.BackwardWith(gout.ToDType(out.DType()))
	return fusedRun{out, gradsOf(leaves)}
}

// fusedWorst is the worst fused-vs-composite error per mode and kind
// (forward, input gradients, gain gradients), for the log.
type fusedWorst map[[2]string]float64

func (w fusedWorst) log(t *testing.T) {
	t.Helper()
	for _, m := range fusedModes {
		t.Logf("%-14s worst error vs composite: forward %.3g, input grads %.3g, gain grads %.3g (tolerance %.3g)", m.name,
			w[[2]string{m.name, "forward"}], w[[2]string{m.name, "input"}], w[[2]string{m.name, "gain"}], m.tol)
	}
}

// compareRuns checks got against want (dtype, shape, values within tol) and,
// when truth is given, that got is no further from it than want plus one bf16
// rounding; names[i] names leaf i, and isGain(i) says whether it is a gain.
func compareRuns(t *testing.T, m fusedMode, worst fusedWorst, names []string, isGain func(i int) bool, got, want, truth fusedRun) {
	t.Helper()
	tol := m.tol
	exact := got.out.Device() == CPU
	check := func(name, kind string, g, w, tr *Tensor) {
		if (g == nil) != (w == nil) {
			t.Errorf("%s: fused gradient %v, composite %v", name, g != nil, w != nil)
			return
		}
		if g == nil {
			return
		}
		if g.DType() != w.DType() || fmt.Sprint(g.Shape()) != fmt.Sprint(w.Shape()) {
			t.Errorf("%s: fused %v %v, composite %v %v", name, g.DType(), g.Shape(), w.DType(), w.Shape())
			return
		}
		e := scaledErr(g, w)
		if exact && kind != "gain" && e != 0 {
			t.Errorf("%s: not bitwise the composite's on the CPU (error %.3g)", name, e)
		}
		k := [2]string{m.name, kind}
		worst[k] = math.Max(worst[k], e)
		if e > tol {
			t.Errorf("%s: fused vs composite error %.3g > %.3g", name, e, tol)
		}
		if tr != nil {
			eg, ew := scaledErr(g, tr), scaledErr(w, tr)
			if eg > ew+bf16U {
				t.Errorf("%s: fused is %.3g from the fp64 truth, the composite %.3g", name, eg, ew)
			}
		}
	}
	check("output", "forward", got.out, want.out, truth.out)
	for i, n := range names {
		var tr *Tensor
		if truth.grads != nil {
			tr = truth.grads[i]
		}
		kind := "input"
		if isGain(i) {
			kind = "gain"
		}
		check("grad "+n, kind, got.grads[i], want.grads[i], tr)
	}
}

// fp64Copies returns detached fp64 copies of leaves, requiring grad alike.
func fp64Copies(leaves []*Tensor) []*Tensor {
	cs := make([]*Tensor, len(leaves))
	for i, l := range leaves {
		cs[i] = l.Detach().ToDType(Float64).Clone().SetRequiresGrad(l.RequiresGrad())
	}
	return cs
}

type combineCase struct {
	name     string
	shape    []int64
	gainGrad []bool // per gain; its length is the number of terms
	mixed    bool   // the last term in fp32 under autocast (the parallel block's residual stream)
}

var combineCases = []combineCase{
	{"two_grad", []int64{2, 5, 7}, []bool{true, true}, false},
	{"two_frozen", []int64{3, 33}, []bool{false, false}, false},
	{"two_one_frozen", []int64{4, 9, 3}, []bool{true, false}, false},
	{"three_grad", []int64{2, 7, 5}, []bool{true, true, true}, false},
	{"three_skip_frozen", []int64{3, 11, 13}, []bool{true, true, false}, true},
	{"one_element", []int64{1}, []bool{true, true, true}, false},
	// More than one reduction chunk (2^14 elements), the last one partial.
	{"chunks", []int64{3, 129, 97}, []bool{true, true, true}, true},
}

func combineComposite(gains, terms []*Tensor) *Tensor {
	r := gains[0].Mul(terms[0])
	for i := 1; i < len(terms); i++ {
		r = r.Add(gains[i].Mul(terms[i]))
	}
	return r
}

func runCombineCases(t *testing.T, dev Device) {
	leakCheck(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	worst := fusedWorst{}
	for _, m := range fusedModes {
		for ci, c := range combineCases {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				WithScope(func(*Scope) {
					ManualSeed(uint64(100 + ci))
					n := len(c.gainGrad)
					var gains, terms, leaves []*Tensor
					var names []string
					for i := 0; i < n; i++ {
						gains = append(gains, fusedLeaf([]int64{1}, m.gainDT, dev, c.gainGrad[i]))
						names = append(names, fmt.Sprintf("gain%d", i))
					}
					for i := 0; i < n; i++ {
						dt := m.termDT
						if c.mixed && m.autocast && i == n-1 {
							dt = Float32
						}
						terms = append(terms, fusedLeaf(c.shape, dt, dev, true))
						names = append(names, fmt.Sprintf("term%d", i))
					}
					leaves = append(append(leaves, gains...), terms...)
					gout := Randn(c.shape, Float64, CPU).ToDevice(dev)
					got := evalRun(m, dev, leaves, gout, func() *Tensor { return FusedCombine(gains, terms) })
					want := evalRun(m, dev, leaves, gout, func() *Tensor { return combineComposite(gains, terms) })
					var truth fusedRun
					if m.termDT == BFloat16 {
						l64 := fp64Copies(leaves)
						truth = evalRun(fusedMode{}, dev, l64, gout, func() *Tensor { return combineComposite(l64[:n], l64[n:]) })
					}
					compareRuns(t, m, worst, names, func(i int) bool { return i < n }, got, want, truth)
				})
			})
		}
	}
	worst.log(t)
}

// TestFusedCombine: FusedCombine against gain·term + … on the CPU.
func TestFusedCombine(t *testing.T) { runCombineCases(t, CPU) }

// TestFusedCombineCUDA: the same on the GPU (CUDA kernels, or the composite
// in a shim without them).
func TestFusedCombineCUDA(t *testing.T) { runCombineCases(t, requireCUDA(t)) }

type epilogueCase struct {
	name       string
	B, H, T, D int64
	gainGrad   [3]bool // resid, skip, centre
	vPermuted  bool    // v a permuted view of [B, T, H, D], as the model's heads
	yPermuted  bool
}

var epilogueCases = []epilogueCase{
	{"all_grad", 2, 3, 5, 4, [3]bool{true, true, true}, true, false},
	{"frozen_gains", 2, 3, 7, 3, [3]bool{false, false, false}, true, true},
	{"centre_only", 1, 2, 9, 5, [3]bool{false, false, true}, true, false},
	{"resid_only_contiguous", 3, 2, 6, 8, [3]bool{true, false, false}, false, false},
	{"t1", 2, 2, 1, 3, [3]bool{true, true, true}, true, true},
	{"d1_odd", 3, 1, 11, 1, [3]bool{true, true, true}, false, true},
	{"longer", 2, 4, 37, 16, [3]bool{true, true, true}, true, true},
}

// epilogueComposite is model/attention.go's shapedFused after SDPA.
func epilogueComposite(y, v, resid, skip, centre *Tensor) *Tensor {
	T := v.Size(2)
	pos := Arange(1, float64(T+1), 1, v.DType(), v.Device()).View(-1, 1)
	return resid.Mul(y).Add(skip.Mul(v)).Sub(centre.Mul(v.Cumsum(2).Div(pos)))
}

// heads4 returns a [B, H, T, D] leaf's view: the leaf itself, or a permuted
// view of a [B, T, H, D] leaf.
func heads4(c epilogueCase, permuted bool, dt DType, dev Device) (view, leaf *Tensor) {
	if !permuted {
		l := fusedLeaf([]int64{c.B, c.H, c.T, c.D}, dt, dev, true)
		return l, l
	}
	l := fusedLeaf([]int64{c.B, c.T, c.H, c.D}, dt, dev, true)
	return l.Permute(0, 2, 1, 3), l
}

func runEpilogueCases(t *testing.T, dev Device) {
	leakCheck(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	worst := fusedWorst{}
	names := []string{"y", "v", "resid", "skip", "centre"}
	for _, m := range fusedModes {
		for ci, c := range epilogueCases {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				WithScope(func(*Scope) {
					ManualSeed(uint64(200 + ci))
					y, yl := heads4(c, c.yPermuted, m.termDT, dev)
					v, vl := heads4(c, c.vPermuted, m.termDT, dev)
					var gains []*Tensor
					for j := 0; j < 3; j++ {
						gains = append(gains, fusedLeaf([]int64{1, c.H, 1, 1}, m.gainDT, dev, c.gainGrad[j]))
					}
					leaves := append([]*Tensor{yl, vl}, gains...)
					gout := Randn([]int64{c.B, c.H, c.T, c.D}, Float64, CPU).ToDevice(dev)
					got := evalRun(m, dev, leaves, gout, func() *Tensor {
						return FusedShapedEpilogue(y, v, gains[0], gains[1], gains[2])
					})
					want := evalRun(m, dev, leaves, gout, func() *Tensor {
						return epilogueComposite(y, v, gains[0], gains[1], gains[2])
					})
					var truth fusedRun
					if m.termDT == BFloat16 {
						l64 := fp64Copies(leaves)
						y64, v64 := l64[0], l64[1]
						if c.yPermuted {
							y64 = y64.Permute(0, 2, 1, 3)
						}
						if c.vPermuted {
							v64 = v64.Permute(0, 2, 1, 3)
						}
						truth = evalRun(fusedMode{}, dev, l64, gout, func() *Tensor {
							return epilogueComposite(y64, v64, l64[2], l64[3], l64[4])
						})
					}
					compareRuns(t, m, worst, names, func(i int) bool { return i >= 2 }, got, want, truth)
				})
			})
		}
	}
	worst.log(t)
}

// TestFusedShapedEpilogue: FusedShapedEpilogue against the composite of
// model/attention.go on the CPU.
func TestFusedShapedEpilogue(t *testing.T) { runEpilogueCases(t, CPU) }

// TestFusedShapedEpilogueCUDA: the same on the GPU.
func TestFusedShapedEpilogueCUDA(t *testing.T) { runEpilogueCases(t, requireCUDA(t)) }

// TestFusedFallbacks: inputs outside the kernels' cover give the composite's
// result (a 0-dim gain more precise than the term, gains of another shape),
// and bad arguments panic with *Error.
func TestFusedFallbacks(t *testing.T) {
	leakCheck(t)
	WithScope(func(*Scope) {
		ManualSeed(7)
		x := Randn([]int64{4, 6}, Float32, CPU).ToDType(BFloat16)
		z := Randn([]int64{4, 6}, Float32, CPU).ToDType(BFloat16)
		g0, g1 := Scalar(0.3, Float32, CPU), Scalar(-1.7, Float32, CPU) // 0-dim: the product is bf16
		got := FusedCombine([]*Tensor{g0, g1}, []*Tensor{x, z})
		want := combineComposite([]*Tensor{g0, g1}, []*Tensor{x, z})
		if got.DType() != want.DType() || scaledErr(got, want) != 0 {
			t.Errorf("0-dim gains: %v vs composite %v, error %.3g", got.DType(), want.DType(), scaledErr(got, want))
		}
		y := Randn([]int64{2, 3, 4, 5}, Float32, CPU)
		r := Randn([]int64{1}, Float32, CPU) // not [1, H, 1, 1]
		got = FusedShapedEpilogue(y, y, r, r, r)
		if e := scaledErr(got, epilogueComposite(y, y, r, r, r)); e != 0 {
			t.Errorf("[1]-shaped epilogue gains: error %.3g", e)
		}
		if err := Try(func() { FusedCombine([]*Tensor{g0}, []*Tensor{x}) }); err == nil {
			t.Error("one term: no error")
		}
		if err := Try(func() { FusedCombine([]*Tensor{g0, g1}, []*Tensor{x}) }); err == nil {
			t.Error("gains and terms of different counts: no error")
		}
	})
}
