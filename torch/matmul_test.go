package torch

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
)

// withCPUMatmul makes e the process's engine for the test and restores
// the one before; it skips where oneDNN cannot be the engine.
func withCPUMatmul(t *testing.T, e CPUMatmul) {
	t.Helper()
	if why := OneDNNMatmulUnusable(); e == MatmulOneDNN && why != "" {
		t.Skipf("oneDNN cannot multiply float32 matrices here: %s", why)
	}
	before := CPUMatmulEngine()
	if err := SetCPUMatmul(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := SetCPUMatmul(before); err != nil {
			t.Error(err)
		}
	})
}

// randLeaf is a [shape] tensor of normal draws in dt, a leaf requiring
// grad when grad.
func randLeaf(r *rand.Rand, dt DType, grad bool, shape ...int64) *Tensor {
	x := make([]float64, numel(shape))
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return FromFloat64(x, shape...).ToDType(dt).SetRequiresGrad(grad)
}

// addmmGrads is bias + x·w (x·wᵀ with wT) and the gradients of a fixed
// weighting of it with respect to the inputs that require them (nil for
// the others).
func addmmGrads(bias, x, w, weight *Tensor, wT bool) []*Tensor {
	wUse := w
	if wT {
		wUse = w.T()
	}
	y := Addmm(bias, x, wUse)
	y.Mul(weight).Sum(false).Backward()
	out := []*Tensor{y.Detach()}
	for _, in := range []*Tensor{bias, x, w} {
		out = append(out, in.Grad())
		if in.RequiresGrad() {
			in.ZeroGrad()
		}
	}
	return out
}

// TestOneDNNAddmm: under the oneDNN engine, float32 Addmm and its three
// gradients equal the float64 product to float32 rounding (1e-5 of the
// scale), as the BLAS engine's do, for a [out] and an [N, out] bias, a
// transposed weight, and inputs that need no gradient; the bias is left as
// it was. The products are
// oneDNN's (the engine's op is in the profile).
func TestOneDNNAddmm(t *testing.T) {
	withCPUMatmul(t, MatmulOneDNN)
	cases := []struct {
		name                   string
		fullBias, wT           bool
		biasGrad, xGrad, wGrad bool
	}{
		{"plain", false, false, true, true, true},
		{"bias [N, out]", true, false, true, true, true},
		{"transposed weight", false, true, true, true, true},
		{"frozen bias and input", false, false, false, false, true},
	}
	const n, in, out = 37, 48, 29
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			leakCheck(t)
			WithScope(func(*Scope) {
				r := rand.New(rand.NewPCG(uint64(i), 5))
				biasShape := []int64{out}
				if c.fullBias {
					biasShape = []int64{n, out}
				}
				bias64 := randLeaf(r, Float64, c.biasGrad, biasShape...)
				x64 := randLeaf(r, Float64, c.xGrad, n, in)
				w64 := randLeaf(r, Float64, c.wGrad, in, out)
				weight := randLeaf(r, Float64, false, n, out)
				leaf32 := func(t64 *Tensor, grad bool) *Tensor {
					return t64.Detach().ToDType(Float32).SetRequiresGrad(grad)
				}
				bias, x := leaf32(bias64, c.biasGrad), leaf32(x64, c.xGrad)
				w := leaf32(w64, c.wGrad)
				if c.wT {
					w = w64.Detach().T().Contiguous().ToDType(Float32).SetRequiresGrad(c.wGrad)
				}
				biasBefore := bias.Detach().Clone()
				got, byOneDNN := oneDNNCalls(t, func() []*Tensor { return addmmGrads(bias, x, w, weight.ToDType(Float32), c.wT) })
				if err := allClose(bias.Detach(), biasBefore, 0); err != nil {
					t.Errorf("Addmm wrote into its bias: %v", err)
				}
				if want := 1 + btoi(c.xGrad) + btoi(c.wGrad); byOneDNN != want {
					t.Errorf("%d products by oneDNN in the profile, want %d", byOneDNN, want)
				}
				want := addmmGrads(bias64, x64, w64, weight, false)
				for k, name := range []string{"bias + x·w", "grad bias", "grad x", "grad w"} {
					g, wnt := got[k], want[k]
					if (g == nil) != (wnt == nil) {
						t.Fatalf("%s: got %v, want %v", name, g, wnt)
					}
					if g == nil {
						continue
					}
					if k == 3 && c.wT {
						g = g.T()
					}
					if err := allClose(g, wnt, 1e-5); err != nil {
						t.Errorf("%s: %v", name, err)
					}
				}
			})
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// oneDNNCalls runs f under the profiler and counts the products oneDNN
// computed.
func oneDNNCalls[T any](t *testing.T, f func() T) (T, int) {
	t.Helper()
	if err := StartProfiler(false); err != nil {
		t.Fatal(err)
	}
	out := f()
	prof, err := StopProfiler("")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range prof {
		if e.Name == "clm::onednn_mm" {
			n++
		}
	}
	return out, n
}

// TestCPUMatmulLeavesOtherProductsAlone: whatever the engine, float64
// products and products under CPU autocast are libtorch's own, bit for
// bit, and none reaches oneDNN.
func TestCPUMatmulLeavesOtherProductsAlone(t *testing.T) {
	leakCheck(t)
	WithScope(func(*Scope) {
		r := rand.New(rand.NewPCG(3, 4))
		bias, x, w := randLeaf(r, Float64, true, 24), randLeaf(r, Float64, true, 30, 40), randLeaf(r, Float64, true, 40, 24)
		weight := randLeaf(r, Float64, false, 30, 24)
		f32 := func(t *Tensor) *Tensor { return t.Detach().ToDType(Float32) }
		run := func() []*Tensor {
			out := addmmGrads(bias, x, w, weight, false)
			var auto *Tensor
			Autocast(CPU, BFloat16, func() { auto = Addmm(f32(bias), f32(x), f32(w)) })
			return append(out, auto)
		}
		want := run()
		withCPUMatmul(t, MatmulOneDNN)
		got, byOneDNN := oneDNNCalls(t, run)
		if byOneDNN != 0 {
			t.Errorf("%d products by oneDNN", byOneDNN)
		}
		for i := range want {
			if err := allClose(got[i], want[i], 0); err != nil {
				t.Errorf("output %d: %v", i, err)
			}
		}
	})
}

// TestLinearCrossEntropyOneDNN: under the oneDNN engine the chunked head
// computes its products by oneDNN and still equals the plain head (BLAS
// products, float32) to 1e-5.
func TestLinearCrossEntropyOneDNN(t *testing.T) {
	withCPUMatmul(t, MatmulOneDNN)
	leakCheck(t)
	WithScope(func(*Scope) {
		h, w, target := lceInputs(8, 37, 16, 50, -100, Float32)
		withCPUMatmul(t, MatmulBLAS)
		wantL, wantH, wantW := plainLCE(h, w, target, -100)
		if err := SetCPUMatmul(MatmulOneDNN); err != nil {
			t.Fatal(err)
		}
		got, byOneDNN := oneDNNCalls(t, func() []*Tensor {
			l, gh, gw := lceGrads(LinearCrossEntropy(h, w, target, -100, 7), h, w)
			return []*Tensor{l, gh, gw}
		})
		if want := 6 * 3; byOneDNN != want { // 6 chunks of 7 rows: logits, grad_h, grad_w
			t.Errorf("%d products by oneDNN, want %d", byOneDNN, want)
		}
		for i, want := range []*Tensor{wantL, wantH, wantW} {
			if err := allClose(got[i], want, 1e-5); err != nil {
				t.Errorf("output %d: %v", i, err)
			}
		}
	})
}

// TestOneDNNProbe: oneDNN is offered only for true float32 products. In
// a process whose oneDNN may use bfloat16 for them
// (ONEDNN_DEFAULT_FPMATH_MODE=BF16: kernels for CPUs with AMX or
// AVX512-BF16 do), either the probe says why not and SetCPUMatmul refuses
// with that reason, or a product of 4096 terms by oneDNN is float32
// accurate (where the kernel ignores the mode, as on Zen 4). An unknown
// engine is an error.
func TestOneDNNProbe(t *testing.T) {
	if os.Getenv("CLM_CHILD_ONEDNN_PROBE") == "1" {
		why := OneDNNMatmulUnusable()
		err := SetCPUMatmul(MatmulOneDNN)
		fmt.Printf("probe: %q\nset: %v\n", why, err)
		switch {
		case why != "":
			if err == nil || !strings.Contains(err.Error(), why) {
				t.Fatalf("oneDNN refused (%s), but SetCPUMatmul said %v", why, err)
			}
		case err != nil:
			t.Fatal(err)
		default:
			leakCheck(t)
			WithScope(func(*Scope) {
				r := rand.New(rand.NewPCG(1, 2))
				b, x, w := randLeaf(r, Float64, false, 16), randLeaf(r, Float64, false, 16, 4096), randLeaf(r, Float64, false, 4096, 16)
				got := Addmm(b.ToDType(Float32), x.ToDType(Float32), w.ToDType(Float32))
				if err := allClose(got, Addmm(b, x, w), 1e-5); err != nil {
					t.Fatalf("oneDNN offered, but its product is not float32: %v", err)
				}
			})
		}
		return
	}
	if err := SetCPUMatmul(CPUMatmul(7)); err == nil || !strings.Contains(err.Error(), "unknown CPU matmul engine 7") {
		t.Errorf("engine 7: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOneDNNProbe$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CLM_CHILD_ONEDNN_PROBE=1", "ONEDNN_DEFAULT_FPMATH_MODE=BF16")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// TestAutoCPUMatmul: train.cpu_matmul's auto is the BLAS where oneDNN
// cannot be the engine or the BLAS is MKL on an Intel CPU, and oneDNN
// elsewhere, each with its reason.
func TestAutoCPUMatmul(t *testing.T) {
	for _, c := range []struct {
		name       string
		unusable   string
		mklOnIntel bool
		want       CPUMatmul
		why        string
	}{
		{"no oneDNN", "no AVX-512", false, MatmulBLAS, "oneDNN is not offered: no AVX-512"},
		{"no oneDNN, Intel", "no AVX-512", true, MatmulBLAS, "oneDNN is not offered: no AVX-512"},
		{"MKL on Intel", "", true, MatmulBLAS, "MKL on an Intel CPU, faster than oneDNN there"},
		{"elsewhere", "", false, MatmulOneDNN, "faster than MKL on a CPU not Intel's"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if e, why := autoCPUMatmul(c.unusable, c.mklOnIntel); e != c.want || why != c.why {
				t.Errorf("autoCPUMatmul(%q, %v) = %v, %q; want %v, %q", c.unusable, c.mklOnIntel, e, why, c.want, c.why)
			}
		})
	}
}

// TestMKLOnIntel: the shim's answer agrees with the kernel's vendor_id and
// with PyTorch's own torch.backends.mkl on the same libtorch.
func TestMKLOnIntel(t *testing.T) {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("no /proc/cpuinfo: %v", err)
	}
	intel := strings.Contains(string(info), "vendor_id\t: GenuineIntel\n")
	out, err := exec.Command(pyref.Require(t), "-c", "import torch; print(torch.backends.mkl.is_available())").Output()
	if err != nil {
		t.Fatalf("reference Python: %v", err)
	}
	mkl := strings.TrimSpace(string(out)) == "True"
	if got := MKLOnIntel(); got != (mkl && intel) {
		t.Errorf("MKLOnIntel() = %v; the CPU is Intel's: %v, libtorch has MKL: %v", got, intel, mkl)
	}
}
