package torch

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"clm/internal/testkit/benchenv"
)

// The composites that FusedLeakyReLU and FusedRMSNorm replace, as
// model/layers.go writes them.
func leakyComposite(x *Tensor, slope float64) *Tensor {
	return Where(x.GeScalar(0), x, x.MulScalar(slope))
}

func rmsComposite(x, scale *Tensor, eps float64) *Tensor {
	rms := x.Norm(2, true, -1).MulScalar(math.Pow(float64(x.Size(-1)), -0.5))
	return scale.Mul(x.Div(rms.AddScalar(eps)))
}

// A fused-activation case: the op, the shape of x as the op sees it, and
// its special inputs.
type fusedActCase struct {
	name       string
	op         string // "leaky" or "rms"
	shape      []int64
	slope, eps float64
	transposed bool   // x is a transposed (non-contiguous) view of its leaf
	special    string // "zeros": some x exactly 0 (and −0); "zero-row": x's row 0 all 0; "nan": a NaN in x
}

var fusedActCases = []fusedActCase{
	{name: "leaky/odd", op: "leaky", shape: []int64{7, 13}, slope: 0.1},
	{name: "leaky/3d", op: "leaky", shape: []int64{3, 5, 33}, slope: 0.01},
	{name: "leaky/large", op: "leaky", shape: []int64{70000}, slope: 0.2}, // several parallel chunks
	{name: "leaky/zeros", op: "leaky", shape: []int64{5, 9}, slope: 0.1, special: "zeros"},
	{name: "leaky/transposed", op: "leaky", shape: []int64{6, 11}, slope: 0.3, transposed: true},
	{name: "leaky/slope0", op: "leaky", shape: []int64{4, 17}, slope: 0, special: "zeros"},
	{name: "leaky/negative-slope", op: "leaky", shape: []int64{4, 17}, slope: -0.5, special: "zeros"},
	{name: "leaky/nan", op: "leaky", shape: []int64{3, 7}, slope: 0.1, special: "nan"},
	{name: "rms/odd", op: "rms", shape: []int64{7, 13}, eps: 1e-5},
	{name: "rms/3d", op: "rms", shape: []int64{2, 5, 40}, eps: 1e-6},
	{name: "rms/one", op: "rms", shape: []int64{5, 1}, eps: 1e-3},
	{name: "rms/long-rows", op: "rms", shape: []int64{37, 300}, eps: 1e-5}, // several row chunks
	{name: "rms/zero-row", op: "rms", shape: []int64{4, 10}, eps: 1e-2, special: "zero-row"},
	{name: "rms/transposed", op: "rms", shape: []int64{9, 12}, eps: 1e-5, transposed: true},
}

// fusedActData is a case's input data in float64: x's leaf (transposed
// when the case is), the scale, and the upstream gradient.
type fusedActData struct {
	x, scale, up []float64
	leafShape    []int64
	d            int64
}

func newFusedActData(c fusedActCase, seed uint64) fusedActData {
	rng := rand.New(rand.NewPCG(seed, 7))
	n := int64(1)
	for _, s := range c.shape {
		n *= s
	}
	d := c.shape[len(c.shape)-1]
	data := fusedActData{x: make([]float64, n), up: make([]float64, n), d: d, leafShape: c.shape}
	for i := range data.x {
		data.x[i] = rng.NormFloat64()
		data.up[i] = rng.NormFloat64()
	}
	// Special values, set in the op's (logical) layout.
	switch c.special {
	case "zeros":
		for i := int64(0); i < n; i += 3 {
			data.x[i] = 0
		}
		data.x[1] = math.Copysign(0, -1)
	case "zero-row":
		for j := int64(0); j < d; j++ {
			data.x[j] = 0
		}
	case "nan":
		data.x[2] = math.NaN()
	}
	if c.transposed {
		// The leaf is x's transpose: the op sees leaf.T(), the same values.
		r, k := c.shape[0], c.shape[1]
		leaf := make([]float64, n)
		for i := int64(0); i < r; i++ {
			for j := int64(0); j < k; j++ {
				leaf[j*r+i] = data.x[i*k+j]
			}
		}
		data.x, data.leafShape = leaf, []int64{k, r}
	}
	if c.op == "rms" {
		data.scale = make([]float64, d)
		for i := range data.scale {
			data.scale[i] = 1 + 0.5*rng.NormFloat64()
		}
	}
	return data
}

// fusedActOut is the output and the gradients of a run (float64 copies).
type fusedActOut struct {
	dtype      DType
	y, gx, gsc *Tensor
}

// runFusedAct runs case c on dev with x in xdt and the scale in sdt, fused or
// composite, optionally under CPU or CUDA autocast to bf16, backward with the
// upstream gradient in the output's dtype. Tensors live in the caller's scope.
func runFusedAct(c fusedActCase, data fusedActData, xdt, sdt DType, dev Device, fused, autocast bool) fusedActOut {
	leaf := FromFloat64(data.x, data.leafShape...).To(xdt, dev).SetRequiresGrad(true)
	x := leaf
	if c.transposed {
		x = leaf.T()
	}
	var scale *Tensor
	if c.op == "rms" {
		scale = FromFloat64(data.scale, data.d).To(sdt, dev).SetRequiresGrad(true)
	}
	var y *Tensor
	f := func() {
		switch {
		case c.op == "leaky" && fused:
			y = FusedLeakyReLU(x, c.slope)
		case c.op == "leaky":
			y = leakyComposite(x, c.slope)
		case fused:
			y = FusedRMSNorm(x, scale, c.eps)
		default:
			y = rmsComposite(x, scale, c.eps)
		}
	}
	if autocast {
		Autocast(dev, BFloat16, f)
	} else {
		f()
	}
	y.BackwardWith(FromFloat64(data.up, c.shape...).To(y.DType(), dev))
	out := fusedActOut{dtype: y.DType(), y: y.To(Float64, CPU), gx: leaf.Grad().To(Float64, CPU)}
	if scale != nil {
		out.gsc = scale.Grad().To(Float64, CPU)
	}
	return out
}

// fusedErr is max|got − want| / max(1, max|want|), NaN where a NaN appears in
// one and not the other at the same place.
func fusedErr(got, want *Tensor) float64 {
	g, w := got.Float64s(), want.Float64s()
	if len(g) != len(w) {
		return math.Inf(1)
	}
	scale, worst := 1.0, 0.0
	for i := range w {
		if math.IsNaN(g[i]) || math.IsNaN(w[i]) {
			if math.IsNaN(g[i]) != math.IsNaN(w[i]) {
				return math.NaN()
			}
			continue
		}
		scale = math.Max(scale, math.Abs(w[i]))
		worst = math.Max(worst, math.Abs(g[i]-w[i]))
	}
	return worst / scale
}

// fusedPairs names the output and the gradients of two runs side by side.
func fusedPairs(a, b fusedActOut) map[string][2]*Tensor {
	p := map[string][2]*Tensor{"y": {a.y, b.y}, "dx": {a.gx, b.gx}}
	if a.gsc != nil {
		p["dscale"] = [2]*Tensor{a.gsc, b.gsc}
	}
	return p
}

// TestFusedActParity: forward and backward (the gradients of x and scale for
// a random upstream gradient) of the fused ops against the composites, in
// float64 and float32 on the CPU.
func TestFusedActParity(t *testing.T) {
	leakCheck(t)
	worst := map[string]float64{}
	for _, dt := range []struct {
		dtype DType
		tol   float64
	}{{Float64, 1e-12}, {Float32, 1e-6}} {
		for i, c := range fusedActCases {
			WithScope(func(*Scope) {
				data := newFusedActData(c, uint64(i+1))
				got := runFusedAct(c, data, dt.dtype, dt.dtype, CPU, true, false)
				want := runFusedAct(c, data, dt.dtype, dt.dtype, CPU, false, false)
				if got.dtype != want.dtype {
					t.Errorf("%s %v: output dtype %v, composite %v", c.name, dt.dtype, got.dtype, want.dtype)
				}
				for name, p := range fusedPairs(got, want) {
					e := fusedErr(p[0], p[1])
					key := fmt.Sprintf("%s %v %s", c.op, dt.dtype, name)
					worst[key] = math.Max(worst[key], e)
					if !(e <= dt.tol) {
						t.Errorf("%s %v %s: error %.3g exceeds %.0g", c.name, dt.dtype, name, e, dt.tol)
					}
				}
				// The leaky ReLU is the composite bit for bit, its gradients
				// too (the same single rounding of slope·x and slope·g).
				if c.op == "leaky" {
					for name, p := range fusedPairs(got, want) {
						if !bytes.Equal(p[0].Bytes(), p[1].Bytes()) && c.special != "nan" {
							t.Errorf("%s %v %s: not bit-equal to the composite", c.name, dt.dtype, name)
						}
					}
				}
			})
		}
	}
	logWorst(t, worst)
}

func logWorst(t *testing.T, worst map[string]float64) {
	t.Helper()
	var lines []string
	for k, v := range worst {
		lines = append(lines, fmt.Sprintf("%s %.3g", k, v))
	}
	slices.Sort(lines)
	t.Logf("worst errors (relative to max(1, max|ref|)): %s", strings.Join(lines, "; "))
}

// TestFusedActAutocastBF16: the fused ops on bf16 activations under CPU
// autocast, as the model runs them (x bf16 from a linear layer, the RMSNorm
// scale a float32 parameter, or bf16), against a float64 truth: the
// composite in float64 on the same bf16-rounded inputs and upstream
// gradient.
//
// The tolerance: the fused ops compute in float32 and round once to bf16
// (8 significant bits), so each element is within half a bf16 ulp, 2⁻⁹
// relative, of the truth, plus float32 rounding of the intermediates
// (~1e-7 relative to the row's terms). We allow 2⁻⁸ relative per element
// plus 2⁻¹⁶ of the tensor's largest magnitude. The composite rounds to bf16
// after every op (norm, scale, add, divide), so it is further off; its error
// is logged for comparison. The leaky ReLU must equal the bf16 composite
// bit for bit.
func TestFusedActAutocastBF16(t *testing.T) {
	leakCheck(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	worst := map[string]float64{}
	for i, c := range fusedActCases {
		sdts := []DType{Float32}
		if c.op == "rms" {
			sdts = []DType{Float32, BFloat16}
		}
		for _, sdt := range sdts {
			WithScope(func(*Scope) {
				data := newFusedActData(c, uint64(i+100))
				roundBF16(data.x)
				roundBF16(data.up)
				if sdt == BFloat16 {
					roundBF16(data.scale)
				}
				got := runFusedAct(c, data, BFloat16, sdt, CPU, true, true)
				comp := runFusedAct(c, data, BFloat16, sdt, CPU, false, true)
				truth := runFusedAct(c, data, Float64, Float64, CPU, false, false)
				if got.dtype != comp.dtype {
					t.Errorf("%s scale %v: output dtype %v, composite %v", c.name, sdt, got.dtype, comp.dtype)
				}
				if c.op == "leaky" {
					for name, p := range fusedPairs(got, comp) {
						if !bytes.Equal(p[0].Bytes(), p[1].Bytes()) && c.special != "nan" {
							t.Errorf("%s bf16 %s: not bit-equal to the composite", c.name, name)
						}
					}
				}
				cp := fusedPairs(comp, truth)
				for name, p := range fusedPairs(got, truth) {
					key := fmt.Sprintf("%s scale %v %s", c.op, sdt, name)
					e := bf16Excess(p[0], p[1])
					worst[key+" fused"] = math.Max(worst[key+" fused"], fusedErr(p[0], p[1]))
					worst[key+" composite"] = math.Max(worst[key+" composite"], fusedErr(cp[name][0], p[1]))
					if e > 0 {
						t.Errorf("%s scale %v %s: %d elements beyond 2⁻⁸ relative (+2⁻¹⁶ of the max) of the float64 truth",
							c.name, sdt, name, int(e))
					}
				}
			})
		}
	}
	logWorst(t, worst)
}

// roundBF16 rounds v to bf16 values (round to nearest even), in place.
func roundBF16(v []float64) {
	for i, x := range v {
		if math.IsNaN(x) {
			continue
		}
		b := math.Float32bits(float32(x))
		b += 0x7fff + (b>>16)&1
		v[i] = float64(math.Float32frombits(b &^ 0xffff))
	}
}

// bf16Excess counts the elements of got beyond 2⁻⁸·|want| + 2⁻¹⁶·max|want|.
func bf16Excess(got, want *Tensor) float64 {
	g, w := got.Float64s(), want.Float64s()
	m := 0.0
	for _, x := range w {
		if !math.IsNaN(x) {
			m = math.Max(m, math.Abs(x))
		}
	}
	n := 0.0
	for i := range w {
		if math.IsNaN(g[i]) || math.IsNaN(w[i]) {
			if math.IsNaN(g[i]) != math.IsNaN(w[i]) {
				n++
			}
			continue
		}
		if math.Abs(g[i]-w[i]) > math.Ldexp(math.Abs(w[i]), -8)+math.Ldexp(m, -16) {
			n++
		}
	}
	return n
}

// TestFusedActSpecialValues pins the values the cases above compare only
// against the composite: the gradient at x = 0 is 1 (slope at negative x),
// and a zero RMSNorm row gives y = 0 and dx = scale·g/eps.
func TestFusedActSpecialValues(t *testing.T) {
	leakCheck(t)
	WithScope(func(*Scope) {
		x := FromFloat64([]float64{-2, 0, math.Copysign(0, -1), 3}, 4).SetRequiresGrad(true)
		y := FusedLeakyReLU(x, 0.25)
		y.Sum(false).Backward()
		if got, want := fmt.Sprint(y.Float64s()), fmt.Sprint([]float64{-0.5, 0, math.Copysign(0, -1), 3}); got != want {
			t.Errorf("leaky y = %s, want %s", got, want)
		}
		if got, want := fmt.Sprint(x.Grad().Float64s()), "[0.25 1 1 1]"; got != want {
			t.Errorf("leaky dx = %s, want %s", got, want)
		}
		xr := Zeros([]int64{2, 3}, Float64, CPU).SetRequiresGrad(true)
		sc := FromFloat64([]float64{1, 2, 3}, 3).SetRequiresGrad(true)
		FusedRMSNorm(xr, sc, 0.5).Sum(false).Backward()
		if got, want := fmt.Sprint(xr.Grad().Float64s()), "[2 4 6 2 4 6]"; got != want {
			t.Errorf("rms zero rows dx = %s, want %s", got, want)
		}
		if got, want := fmt.Sprint(sc.Grad().Float64s()), "[0 0 0]"; got != want {
			t.Errorf("rms zero rows dscale = %s, want %s", got, want)
		}
	})
}

// keepThreads restores libtorch's thread count when the test ends (on the
// OS thread leakCheck locked, which its cleanup releases after this one).
func keepThreads(t *testing.T) {
	prev := NumThreads()
	t.Cleanup(func() {
		if err := SetNumThreads(prev); err != nil {
			t.Error(err)
		}
	})
}

// fusedBytes runs f (one fused op, forward and backward) in a scope and
// returns the bytes of every tensor it gives back.
func fusedBytes(f func() []*Tensor) [][]byte {
	var out [][]byte
	WithScope(func(*Scope) {
		for _, t := range f() {
			out = append(out, t.Contiguous().Bytes())
		}
	})
	return out
}

// TestFusedDeterministicThreads: every fused CPU kernel gives the same bits
// whatever the number of threads (the sums over fixed chunks of rows or per
// (batch, head) slice, their partials added in order), on shapes that split
// into many parallel tasks.
func TestFusedDeterministicThreads(t *testing.T) {
	leakCheck(t)
	keepThreads(t)
	act := func(c fusedActCase) func() []*Tensor {
		data := newFusedActData(c, 42)
		return func() []*Tensor {
			out := runFusedAct(c, data, Float32, Float32, CPU, true, false)
			if out.gsc == nil {
				return []*Tensor{out.y, out.gx}
			}
			return []*Tensor{out.y, out.gx, out.gsc}
		}
	}
	seeded := func(seed uint64, f func() fusedRun) func() []*Tensor {
		return func() []*Tensor {
			ManualSeed(seed)
			return f().tensors()
		}
	}
	fp32 := fusedModes[1]
	combine := seeded(11, func() fusedRun {
		shape := []int64{8, 64, 129} // 4 reduction chunks of 2^14, the last partial
		var leaves []*Tensor
		for i := 0; i < 3; i++ {
			leaves = append(leaves, fusedLeaf([]int64{1}, Float32, CPU, true))
		}
		for i := 0; i < 3; i++ {
			leaves = append(leaves, fusedLeaf(shape, Float32, CPU, true))
		}
		return evalRun(fp32, CPU, leaves, Randn(shape, Float64, CPU), func() *Tensor { return FusedCombine(leaves[:3], leaves[3:]) })
	})
	epilogue := seeded(12, func() fusedRun {
		c := epilogueCase{B: 4, H: 6, T: 33, D: 16}
		y, yl := heads4(c, false, Float32, CPU)
		v, vl := heads4(c, true, Float32, CPU)
		leaves := []*Tensor{yl, vl}
		for j := 0; j < 3; j++ {
			leaves = append(leaves, fusedLeaf([]int64{1, c.H, 1, 1}, Float32, CPU, true))
		}
		gout := Randn([]int64{c.B, c.H, c.T, c.D}, Float64, CPU)
		return evalRun(fp32, CPU, leaves, gout, func() *Tensor { return FusedShapedEpilogue(y, v, leaves[2], leaves[3], leaves[4]) })
	})
	cases := []struct {
		name string
		run  func() []*Tensor
	}{
		{"leaky", act(fusedActCase{op: "leaky", shape: []int64{300, 1000}, slope: 0.1})},
		{"rms", act(fusedActCase{op: "rms", shape: []int64{1000, 64}, eps: 1e-5})},
		{"combine", combine},
		{"epilogue", epilogue},
		{"attention", func() []*Tensor { // 32 slices, a partial last block
			r := attentionRun(attentionCase{B: 4, H: 8, T: 70, D: 16, permuted: true}, 13, Float32, FusedCausalAttention)
			return r.tensors()
		}},
		{"attention_one_slice", func() []*Tensor { // B·H = 1: the slice runs outside the parallel region
			r := attentionRun(attentionCase{B: 1, H: 1, T: 1500, D: 64}, 14, Float32, FusedCausalAttention)
			return r.tensors()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ref [][]byte
			for _, n := range []int{1, 2, 3} {
				if err := SetNumThreads(n); err != nil {
					t.Fatal(err)
				}
				got := fusedBytes(c.run)
				if ref == nil {
					ref = got
					continue
				}
				for i := range got {
					if !bytes.Equal(got[i], ref[i]) {
						t.Errorf("%d threads: tensor %d (output, then gradients) differs from 1 thread", n, i)
					}
				}
			}
		})
	}
}

// TestKernelThreads: clm's own CPU kernels get as many threads as libtorch's
// ops. ATen runs at::parallel_for serially in a caller compiled without
// OpenMP (ATen/Parallel-inl.h), so a shim built so would run every fused op
// on one thread whatever train.threads says (CMakeLists.txt).
func TestKernelThreads(t *testing.T) {
	leakCheck(t)
	keepThreads(t)
	for _, n := range []int{1, 2, 3} {
		if err := SetNumThreads(n); err != nil {
			t.Fatal(err)
		}
		r, err := ReadReport()
		if err != nil {
			t.Fatal(err)
		}
		if r.Threads != n || r.KernelThreads != n {
			t.Errorf("at %d threads: libtorch's ops get %d, clm's kernels %d", n, r.Threads, r.KernelThreads)
		}
	}
}

// TestFusedActErrors: a scale of the wrong shape is a *Error, not a crash.
func TestFusedActErrors(t *testing.T) {
	leakCheck(t)
	WithScope(func(*Scope) {
		x := Randn([]int64{3, 4}, Float32, CPU)
		err := Try(func() { FusedRMSNorm(x, Ones([]int64{5}, Float32, CPU), 1e-5) })
		if err == nil || !strings.Contains(err.Error(), "scale") {
			t.Errorf("wrong scale shape: err %v", err)
		}
	})
}

// TestFusedCUDAKernelsBuilt: scripts/check-cuda-shim.sh (CLM_EXPECT_SHIM=cuda)
// and scripts/device-check.sh (CLM_REQUIRE_FUSED_KERNELS=1) build the shim
// with nvcc: the kernels must be in it. A CPU shim has none.
func TestFusedCUDAKernelsBuilt(t *testing.T) {
	want := os.Getenv("CLM_EXPECT_SHIM") == "cuda" || os.Getenv("CLM_REQUIRE_FUSED_KERNELS") != ""
	switch got := FusedCUDAKernels(); {
	case want && !got:
		t.Error("the shim was built without the CUDA kernels of the fused ops (nvcc not found or not run)")
	case os.Getenv("CLM_EXPECT_SHIM") == "cpu" && got:
		t.Error("a CPU shim reports CUDA kernels")
	default:
		t.Logf("fused CUDA kernels: %v", got)
	}
}

// TestFusedActGPU: on CUDA, the fused ops (the CUDA kernels) against the
// CUDA composite and against the CPU fused ops, in float64, float32 and bf16
// under CUDA autocast (bf16 tolerance as in TestFusedActAutocastBF16,
// against the float64 truth).
func TestFusedActGPU(t *testing.T) {
	if !CUDAAvailable() {
		t.Skip("no CUDA device")
	}
	if os.Getenv("CLM_REQUIRE_FUSED_KERNELS") != "" && !FusedCUDAKernels() {
		t.Fatal("CLM_REQUIRE_FUSED_KERNELS: the shim has no CUDA kernels")
	}
	leakCheck(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dev := CUDA(0)
	cases := append([]fusedActCase{
		{name: "leaky/step", op: "leaky", shape: []int64{16 * 128, 1024}, slope: 0.1},
		{name: "rms/step", op: "rms", shape: []int64{16 * 128, 256}, eps: 1e-5},
		{name: "rms/many-rows", op: "rms", shape: []int64{70000, 8}, eps: 1e-5},
	}, fusedActCases...)
	worst := map[string]float64{}
	for i, c := range cases {
		for _, dt := range []struct {
			dtype DType
			tol   float64
		}{{Float64, 1e-12}, {Float32, 1e-6}} {
			WithScope(func(*Scope) {
				data := newFusedActData(c, uint64(i+200))
				got := runFusedAct(c, data, dt.dtype, dt.dtype, dev, true, false)
				comp := runFusedAct(c, data, dt.dtype, dt.dtype, dev, false, false)
				cpu := runFusedAct(c, data, dt.dtype, dt.dtype, CPU, true, false)
				cp := fusedPairs(got, cpu)
				for name, p := range fusedPairs(got, comp) {
					for ref, e := range map[string]float64{"cuda composite": fusedErr(p[0], p[1]), "cpu fused": fusedErr(cp[name][0], cp[name][1])} {
						key := fmt.Sprintf("%s %v %s vs %s", c.op, dt.dtype, name, ref)
						worst[key] = math.Max(worst[key], e)
						if !(e <= dt.tol) {
							t.Errorf("%s %v %s: error %.3g vs %s exceeds %.0g", c.name, dt.dtype, name, e, ref, dt.tol)
						}
					}
				}
			})
		}
		WithScope(func(*Scope) {
			data := newFusedActData(c, uint64(i+300))
			roundBF16(data.x)
			roundBF16(data.up)
			got := runFusedAct(c, data, BFloat16, Float32, dev, true, true)
			comp := runFusedAct(c, data, BFloat16, Float32, dev, false, true)
			truth := runFusedAct(c, data, Float64, Float64, CPU, false, false)
			if got.dtype != comp.dtype {
				t.Errorf("%s: CUDA autocast output dtype %v, composite %v", c.name, got.dtype, comp.dtype)
			}
			for name, p := range fusedPairs(got, truth) {
				key := fmt.Sprintf("%s bf16 %s vs truth", c.op, name)
				worst[key] = math.Max(worst[key], fusedErr(p[0], p[1]))
				if n := bf16Excess(p[0], p[1]); n > 0 {
					t.Errorf("%s CUDA bf16 %s: %d elements beyond the bf16 tolerance of the float64 truth", c.name, name, int(n))
				}
			}
		})
	}
	logWorst(t, worst)
}

// BenchmarkFusedAct is one forward and backward pass of the fused ops and of
// the composites they replace at a training step's shape (16 sequences of
// 128 tokens; the MLP's hidden width 1024 for the leaky ReLU, the model
// width 256 for RMSNorm), float32 on the CPU, CLM_BENCH_THREADS threads.
func BenchmarkFusedAct(b *testing.B) {
	const rows = 16 * 128
	for _, op := range []struct {
		name string
		d    int64
		f    map[string]func(x, s *Tensor) *Tensor
	}{
		{"leaky", 1024, map[string]func(x, s *Tensor) *Tensor{
			"fused":     func(x, _ *Tensor) *Tensor { return FusedLeakyReLU(x, 0.1) },
			"composite": func(x, _ *Tensor) *Tensor { return leakyComposite(x, 0.1) },
		}},
		{"rms", 256, map[string]func(x, s *Tensor) *Tensor{
			"fused":     func(x, s *Tensor) *Tensor { return FusedRMSNorm(x, s, 1e-5) },
			"composite": func(x, s *Tensor) *Tensor { return rmsComposite(x, s, 1e-5) },
		}},
	} {
		for _, kind := range []string{"fused", "composite"} {
			b.Run(op.name+"/"+kind, func(b *testing.B) {
				benchenv.SetThreads(b, SetNumThreads)
				x := Randn([]int64{rows, op.d}, Float32, CPU).SetRequiresGrad(true)
				s := Ones([]int64{op.d}, Float32, CPU).SetRequiresGrad(true)
				up := Randn([]int64{rows, op.d}, Float32, CPU)
				defer x.Free()
				defer s.Free()
				defer up.Free()
				benchForwardBackward(b, func() *Tensor { return op.f[kind](x, s) }, up, x, s)
			})
		}
	}
}
