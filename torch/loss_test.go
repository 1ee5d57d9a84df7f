package torch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"clm/internal/testkit/benchenv"
	"clm/internal/testkit/pyref"
	"clm/safetensors"
)

// lceInputs draws h [n, d], w [v, d] (dt, leaves requiring grad) and int64
// targets [n] in [0, v) where every third is ignore (when ignore < 0) or,
// with ignore >= 0, where ignore occurs as an ordinary class id too.
func lceInputs(seed uint64, n, d, v int64, ignore int64, dt DType) (h, w, target *Tensor) {
	r := rand.New(rand.NewPCG(seed, 99))
	randn := func(shape ...int64) *Tensor {
		x := make([]float64, numel(shape))
		for i := range x {
			x[i] = r.NormFloat64()
		}
		return FromFloat64(x, shape...).ToDType(dt).SetRequiresGrad(true)
	}
	h, w = randn(n, d), randn(v, d)
	t := make([]int64, n)
	for i := range t {
		t[i] = r.Int64N(v)
		if ignore < 0 && i%3 == 1 {
			t[i] = ignore
		}
	}
	return h, w, FromInt64(t)
}

// lceGrads runs loss.Backward and returns the loss and the gradients of h
// and w (dropped from the leaves afterwards).
func lceGrads(loss, h, w *Tensor) (l, gh, gw *Tensor) {
	loss.Backward()
	gh, gw = h.Grad(), w.Grad()
	h.ZeroGrad()
	w.ZeroGrad()
	return loss.Detach(), gh, gw
}

// plainLCE is the reference path: the whole logits matrix.
func plainLCE(h, w, target *Tensor, ignore int64) (l, gh, gw *Tensor) {
	return lceGrads(CrossEntropy(Linear(h, w, nil), target, ignore, ReduceMean), h, w)
}

// TestLinearCrossEntropyMatchesPlain compares the chunked op with
// CrossEntropy(Linear(h, w)) on the same inputs: loss and both gradients,
// float64 to 1e-12 and float32 to 1e-5 (relative to max(1, |reference|)),
// for chunks of 1, 7, N and more than N rows, with ignored targets (the
// default −100 and an ignore index that is also a class id).
func TestLinearCrossEntropyMatchesPlain(t *testing.T) {
	const n, d, v = 37, 16, 50
	for _, dt := range []DType{Float64, Float32} {
		tol := 1e-12
		if dt == Float32 {
			tol = 1e-5
		}
		for _, ignore := range []int64{-100, 3} {
			for _, chunk := range []int64{1, 7, n, n + 5} {
				t.Run(fmt.Sprintf("%v/ignore%d/chunk%d", dt, ignore, chunk), func(t *testing.T) {
					leakCheck(t)
					WithScope(func(*Scope) {
						h, w, target := lceInputs(uint64(chunk), n, d, v, ignore, dt)
						wantL, wantH, wantW := plainLCE(h, w, target, ignore)
						loss := LinearCrossEntropy(h, w, target, ignore, chunk)
						if loss.DType() != dt || loss.Dim() != 0 {
							t.Fatalf("loss is %v", loss)
						}
						gotL, gotH, gotW := lceGrads(loss, h, w)
						for _, c := range []struct {
							name      string
							got, want *Tensor
						}{{"loss", gotL, wantL}, {"grad_h", gotH, wantH}, {"grad_w", gotW, wantW}} {
							if err := allClose(c.got, c.want, tol); err != nil {
								t.Errorf("%s: %v", c.name, err)
							}
						}
						if chunk == 7 {
							t.Logf("loss %.17g, plain %.17g", gotL.Item(), wantL.Item())
						}
					})
				})
			}
		}
	}
}

// TestLinearCrossEntropyScaledAndPartial: an upstream factor on the loss
// (a loss-segment weight, a loss scale) reaches both gradients, and only the
// inputs that require grad get one, on both backward paths: gradients formed
// in forward (float64) and recomputed in backward (float16 matmuls). The
// reference is the plain head on the same values in float64.
func TestLinearCrossEntropyScaledAndPartial(t *testing.T) {
	const n, d, v, factor = 23, 8, 31, 0.375
	cases := []struct {
		dt           DType
		gradH, gradW bool
		tol          float64
	}{
		{Float64, true, true, 1e-12},
		{Float64, true, false, 1e-12},
		{Float64, false, true, 1e-12},
		{Float16, true, true, 2e-2},
		{Float16, false, true, 2e-2},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v/h%v/w%v", c.dt, c.gradH, c.gradW), func(t *testing.T) {
			leakCheck(t)
			WithScope(func(*Scope) {
				h0, w0, target := lceInputs(21, n, d, v, -100, c.dt)
				h := h0.Detach().SetRequiresGrad(c.gradH)
				w := w0.Detach().SetRequiresGrad(c.gradW)
				LinearCrossEntropy(h, w, target, -100, 5).MulScalar(factor).Backward()
				hr := h.Detach().ToDType(Float64).SetRequiresGrad(true)
				wr := w.Detach().ToDType(Float64).SetRequiresGrad(true)
				CrossEntropy(Linear(hr, wr, nil), target, -100, ReduceMean).MulScalar(factor).Backward()
				for _, g := range []struct {
					name      string
					want      bool
					got, leaf *Tensor
					ref       *Tensor
				}{{"grad_h", c.gradH, h.Grad(), h, hr.Grad()}, {"grad_w", c.gradW, w.Grad(), w, wr.Grad()}} {
					if !g.want {
						if g.got != nil {
							t.Errorf("%s: a gradient for an input that does not require one", g.name)
						}
						continue
					}
					if g.got == nil {
						t.Fatalf("%s: missing", g.name)
					}
					if g.got.DType() != c.dt {
						t.Errorf("%s is %v, want %v", g.name, g.got.DType(), c.dt)
					}
					if err := allClose(g.got.ToDType(Float64), g.ref, c.tol); err != nil {
						t.Errorf("%s: %v", g.name, err)
					}
				}
			})
		})
	}
}

// TestLinearCrossEntropyAllIgnored: with every target ignored the loss is
// NaN, as PyTorch's mean reduction (0/0) and the plain path give, and the
// gradients are zero, as the plain path's are. NaN is kept for fidelity: a
// batch of padding alone is a bug upstream that a silent 0 would hide.
func TestLinearCrossEntropyAllIgnored(t *testing.T) {
	leakCheck(t)
	WithScope(func(*Scope) {
		h, w, _ := lceInputs(5, 6, 4, 9, -100, Float64)
		target := Full([]int64{6}, -100, Int64, CPU)
		wantL, wantH, wantW := plainLCE(h, w, target, -100)
		gotL, gotH, gotW := lceGrads(LinearCrossEntropy(h, w, target, -100, 4), h, w)
		if !math.IsNaN(gotL.Item()) || !math.IsNaN(wantL.Item()) {
			t.Fatalf("loss %v (plain %v), want NaN", gotL.Item(), wantL.Item())
		}
		for _, c := range []struct {
			name      string
			got, want *Tensor
		}{{"grad_h", gotH, wantH}, {"grad_w", gotW, wantW}} {
			if m := c.got.Abs().Max(AllDims, false).Item(); m != 0 {
				t.Errorf("%s: max |g| %v, want zeros", c.name, m)
			}
			if err := allClose(c.got, c.want, 0); err != nil {
				t.Errorf("%s vs plain: %v", c.name, err)
			}
		}
		t.Logf("all ignored: loss %v (plain %v), gradients zero", gotL.Item(), wantL.Item())
	})
}

// TestLinearCrossEntropyHalf runs bfloat16 inputs, and float32 inputs under
// CPU autocast: logits are evaluated in float32 after the bfloat16 matmul,
// the loss is float32 and the gradients keep the inputs' dtypes; values are
// close to the float32 plain path on the same (rounded) inputs.
func TestLinearCrossEntropyHalf(t *testing.T) {
	leakCheck(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n, d, v = 40, 32, 64
	WithScope(func(*Scope) {
		hb, wb, target := lceInputs(8, n, d, v, -100, BFloat16)
		h := hb.Detach().ToDType(Float32).SetRequiresGrad(true)
		w := wb.Detach().ToDType(Float32).SetRequiresGrad(true)
		wantL, wantH, wantW := plainLCE(h, w, target, -100)

		loss := LinearCrossEntropy(hb, wb, target, -100, 16)
		if loss.DType() != Float32 {
			t.Fatalf("bf16 inputs: loss is %v, want float32", loss.DType())
		}
		l, gh, gw := lceGrads(loss, hb, wb)
		if gh.DType() != BFloat16 || gw.DType() != BFloat16 {
			t.Fatalf("bf16 inputs: grads %v %v", gh.DType(), gw.DType())
		}
		for _, c := range []struct {
			name      string
			got, want *Tensor
		}{{"loss", l, wantL}, {"grad_h", gh, wantH}, {"grad_w", gw, wantW}} {
			if err := allClose(c.got, c.want, 2e-2); err != nil {
				t.Errorf("bf16 %s: %v", c.name, err)
			}
		}

		var aloss *Tensor
		Autocast(CPU, BFloat16, func() { aloss = LinearCrossEntropy(h, w, target, -100, 16) })
		if aloss.DType() != Float32 {
			t.Fatalf("autocast: loss is %v", aloss.DType())
		}
		l, gh, gw = lceGrads(aloss, h, w)
		if gh.DType() != Float32 || gw.DType() != Float32 {
			t.Fatalf("autocast: grads %v %v", gh.DType(), gw.DType())
		}
		var plainAuto *Tensor
		Autocast(CPU, BFloat16, func() { plainAuto = CrossEntropy(Linear(h, w, nil), target, -100, ReduceMean) })
		pl, ph, pw := lceGrads(plainAuto, h, w)
		for _, c := range []struct {
			name      string
			got, want *Tensor
		}{{"loss", l, pl}, {"grad_h", gh, ph}, {"grad_w", gw, pw}} {
			if err := allClose(c.got, c.want, 2e-2); err != nil {
				t.Errorf("autocast %s vs plain under autocast: %v", c.name, err)
			}
		}
		// The matmuls ran in bfloat16: the result is nearer the plain path
		// under autocast than the float32 one.
		if a, b := math.Abs(l.Item()-pl.Item()), math.Abs(l.Item()-wantL.Item()); a > b {
			t.Errorf("autocast ignored: loss %v is %.3g from the autocast plain path, %.3g from float32", l.Item(), a, b)
		}
		t.Logf("bf16: loss %.6g, autocast %.6g, autocast plain %.6g, fp32 %.6g", loss.Item(), l.Item(), pl.Item(), wantL.Item())
	})
}

// TestLinearCrossEntropyPyTorch compares loss and gradients in float64 with
// F.cross_entropy(h @ w.T, t) in PyTorch (scripts/reference/linear_ce_check.py).
func TestLinearCrossEntropyPyTorch(t *testing.T) {
	pyref.Require(t)
	leakCheck(t)
	const n, d, v, ignore = 29, 8, 23, -100
	WithScope(func(*Scope) {
		h, w, target := lceInputs(12, n, d, v, ignore, Float64)
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.safetensors"), filepath.Join(dir, "out.safetensors")
		if err := SaveSafetensors(in, []Named{{"h", h.Detach()}, {"w", w.Detach()}, {"target", target}}, nil); err != nil {
			t.Fatal(err)
		}
		pyref.Run(t, "linear_ce_check.py", in, strconv.Itoa(ignore), out)
		f, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		l, gh, gw := lceGrads(LinearCrossEntropy(h, w, target, ignore, 5), h, w)
		for _, c := range []struct {
			name string
			got  *Tensor
		}{{"loss", l.Reshape(1)}, {"grad_h", gh}, {"grad_w", gw}} {
			want, err := TensorFromFile(f, c.name, CPU)
			if err != nil {
				t.Fatal(err)
			}
			if err := allClose(c.got, want, 1e-12); err != nil {
				t.Errorf("%s vs PyTorch: %v", c.name, err)
			}
			want.Free()
		}
		t.Logf("loss %.17g", l.Item())
	})
}

// TestLinearCrossEntropyErrors: bad shapes, dtypes and chunk sizes are
// *Error panics that Try recovers, with no handle left behind.
func TestLinearCrossEntropyErrors(t *testing.T) {
	leakCheck(t)
	cases := []struct {
		name string
		f    func()
		want string
	}{
		{"features", func() {
			LinearCrossEntropy(Zeros([]int64{4, 3}, Float32, CPU), Zeros([]int64{5, 2}, Float32, CPU), Zeros([]int64{4}, Int64, CPU), -100, 2)
		}, "features"},
		{"rows", func() {
			LinearCrossEntropy(Zeros([]int64{4, 3}, Float32, CPU), Zeros([]int64{5, 3}, Float32, CPU), Zeros([]int64{3}, Int64, CPU), -100, 2)
		}, "targets for 4 rows"},
		{"target dtype", func() {
			LinearCrossEntropy(Zeros([]int64{4, 3}, Float32, CPU), Zeros([]int64{5, 3}, Float32, CPU), Zeros([]int64{4}, Int32, CPU), -100, 2)
		}, "Long"},
		{"3-d h", func() {
			LinearCrossEntropy(Zeros([]int64{2, 2, 3}, Float32, CPU), Zeros([]int64{5, 3}, Float32, CPU), Zeros([]int64{4}, Int64, CPU), -100, 2)
		}, "want h [N, d]"},
		{"chunk", func() {
			LinearCrossEntropy(Zeros([]int64{4, 3}, Float32, CPU), Zeros([]int64{5, 3}, Float32, CPU), Zeros([]int64{4}, Int64, CPU), -100, 0)
		}, "chunk"},
		{"target out of range", func() {
			LinearCrossEntropy(Zeros([]int64{4, 3}, Float32, CPU), Zeros([]int64{5, 3}, Float32, CPU), Full([]int64{4}, 5, Int64, CPU), -100, 2)
		}, ""},
	}
	for _, c := range cases {
		var err error
		WithScope(func(*Scope) { err = Try(c.f) })
		var te *Error
		if !errors.As(err, &te) || !strings.Contains(te.Msg, c.want) {
			t.Errorf("%s: got %v, want *Error with %q", c.name, err, c.want)
		}
	}
}

const lceChildEnv = "CLM_LCE_MEMORY_CHILD"

// procStatusKB reads a "Name:   N kB" line of /proc/self/status.
func procStatusKB(name string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", name)
}

// Sizes of the memory check: the original's LM head for 4096 tokens.
const lceMemN, lceMemD, lceMemV, lceMemChunk = 4096, 32, 52000, 512

// TestLinearCrossEntropyMemoryChild is the subprocess of
// TestLinearCrossEntropyMemory: with $CLM_LCE_MEMORY_CHILD set to "chunked"
// or "plain" it runs one forward and backward and prints the growth of the
// peak resident set (VmHWM, reset through /proc/self/clear_refs).
func TestLinearCrossEntropyMemoryChild(t *testing.T) {
	which := os.Getenv(lceChildEnv)
	if which == "" {
		t.Skip("subprocess of TestLinearCrossEntropyMemory")
	}
	WithScope(func(*Scope) {
		ManualSeed(1)
		h := Randn([]int64{lceMemN, lceMemD}, Float32, CPU).SetRequiresGrad(true)
		w := Randn([]int64{lceMemV, lceMemD}, Float32, CPU).MulScalar(0.1).Detach().SetRequiresGrad(true)
		target := Rand([]int64{lceMemN}, Float32, CPU).MulScalar(lceMemV).ToDType(Int64)
		runtime.GC()
		// Writing 5 resets VmHWM to the current RSS (Linux >= 4.0).
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			fmt.Printf("LCE_SKIP clear_refs: %v\n", err)
			return
		}
		rss0, err1 := procStatusKB("VmRSS")
		hwm0, err2 := procStatusKB("VmHWM")
		if err1 != nil || err2 != nil || hwm0 > rss0+1024 {
			fmt.Printf("LCE_SKIP VmHWM not reset (%v %v, HWM %d kB, RSS %d kB)\n", err1, err2, hwm0, rss0)
			return
		}
		var loss *Tensor
		if which == "chunked" {
			loss = LinearCrossEntropy(h, w, target, -100, lceMemChunk)
		} else {
			loss = CrossEntropy(Linear(h, w, nil), target, -100, ReduceMean)
		}
		loss.Backward()
		hwm1, err := procStatusKB("VmHWM")
		if err != nil {
			fmt.Printf("LCE_SKIP %v\n", err)
			return
		}
		fmt.Printf("LCE_PEAK_GROWTH %d loss %.6f\n", (hwm1-rss0)*1024, loss.Item())
		h.ZeroGrad()
		w.ZeroGrad()
	})
}

func lceChild(t *testing.T, which string) (growth int64, loss float64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLinearCrossEntropyMemoryChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), lceChildEnv+"="+which)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s child: %v\n%s", which, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "LCE_SKIP "); ok {
			t.Skipf("peak RSS not measurable here: %s", rest)
		}
		if _, err := fmt.Sscanf(line, "LCE_PEAK_GROWTH %d loss %g", &growth, &loss); err == nil {
			return growth, loss
		}
	}
	t.Fatalf("%s child printed no measurement:\n%s", which, out)
	return 0, 0
}

// TestLinearCrossEntropyMemory measures, on the CPU and in subprocesses, the
// growth of peak resident memory over one forward and backward for N=4096
// tokens, V=52000 words: the plain path holds several [N, V] float32
// matrices (852 MB each), the chunked op (chunk 512) at most a few [512, V]
// ones (106 MB each). It asserts the chunked peak stays under 6 chunk-sized
// matrices plus the gradient of w, and under a quarter of the plain path's.
func TestLinearCrossEntropyMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("memory check: several GB and a few seconds")
	}
	if os.Getenv(lceChildEnv) != "" {
		t.Skip("inside the child")
	}
	chunked, l1 := lceChild(t, "chunked")
	plain, l2 := lceChild(t, "plain")
	const mb = 1 << 20
	full := int64(lceMemN * lceMemV * 4)
	chunkBytes := int64(lceMemChunk * lceMemV * 4)
	limit := 6*chunkBytes + int64(lceMemV*lceMemD*4)
	t.Logf("peak RSS growth: chunked %.0f MB (limit %.0f MB), plain %.0f MB; one [N, V] logits matrix %.0f MB; losses %.6f %.6f",
		float64(chunked)/mb, float64(limit)/mb, float64(plain)/mb, float64(full)/mb, l1, l2)
	if math.Abs(l1-l2) > 1e-4*math.Abs(l2) {
		t.Errorf("losses differ: chunked %v, plain %v", l1, l2)
	}
	if plain < full {
		t.Errorf("plain path grew by %d MB only, less than its logits: the measurement is broken", plain/mb)
	}
	if chunked > limit || chunked > plain/4 {
		t.Errorf("chunked op grew by %d MB (limit %d MB, plain %d MB)", chunked/mb, limit/mb, plain/mb)
	}
}

// TestLinearCrossEntropyGPU checks values against the CPU and the memory
// claim on CUDA with the caching allocator's peak statistic.
func TestLinearCrossEntropyGPU(t *testing.T) {
	dev := requireCUDA(t)
	leakCheck(t)
	WithScope(func(*Scope) {
		h, w, target := lceInputs(3, 37, 16, 50, -100, Float64)
		wantL, wantH, wantW := lceGrads(LinearCrossEntropy(h, w, target, -100, 7), h, w)
		hg := h.Detach().ToDevice(dev).SetRequiresGrad(true)
		wg := w.Detach().ToDevice(dev).SetRequiresGrad(true)
		l, gh, gw := lceGrads(LinearCrossEntropy(hg, wg, target.ToDevice(dev), -100, 7), hg, wg)
		for _, c := range []struct {
			name      string
			got, want *Tensor
		}{{"loss", l, wantL}, {"grad_h", gh, wantH}, {"grad_w", gw, wantW}} {
			if err := allClose(c.got.ToDevice(CPU), c.want, 1e-10); err != nil {
				t.Errorf("%s GPU vs CPU: %v", c.name, err)
			}
		}
	})
	peak := func(f func(h, w, target *Tensor) *Tensor) int64 {
		var p int64
		WithScope(func(*Scope) {
			ManualSeed(1)
			h := Randn([]int64{lceMemN, 768}, Float32, dev).SetRequiresGrad(true)
			w := Randn([]int64{lceMemV, 768}, Float32, dev).Detach().SetRequiresGrad(true)
			target := Rand([]int64{lceMemN}, Float32, dev).MulScalar(lceMemV).ToDType(Int64)
			if err := Synchronize(dev); err != nil {
				t.Fatal(err)
			}
			base, _, err := CUDAMemory(dev)
			if err != nil {
				t.Fatal(err)
			}
			if err := ResetCUDAPeak(dev); err != nil {
				t.Fatal(err)
			}
			f(h, w, target).Backward()
			_, pk, _ := CUDAMemory(dev)
			p = pk - base
			h.ZeroGrad()
			w.ZeroGrad()
		})
		return p
	}
	chunked := peak(func(h, w, target *Tensor) *Tensor { return LinearCrossEntropy(h, w, target, -100, lceMemChunk) })
	plain := peak(func(h, w, target *Tensor) *Tensor {
		return CrossEntropy(Linear(h, w, nil), target, -100, ReduceMean)
	})
	const mb = 1 << 20
	limit := int64(6*lceMemChunk*lceMemV*4 + 2*lceMemV*768*4)
	t.Logf("CUDA peak growth: chunked %d MB (limit %d MB), plain %d MB", chunked/mb, limit/mb, plain/mb)
	if chunked > limit || chunked > plain/2 {
		t.Errorf("chunked op peaked at %d MB (limit %d MB, plain %d MB)", chunked/mb, limit/mb, plain/mb)
	}
}

// BenchmarkLinearCrossEntropy: forward and backward of the chunked head
// (2048 rows of width 256, the 52000-word vocabulary, chunks of 2048 rows)
// beside the plain Linear + CrossEntropy, on CLM_BENCH_THREADS threads (1).
// The logits have unit scale, as a language model's: with lceInputs' scale
// (standard deviation 16) most softmax gradients are float32 subnormals,
// which slow the CPU's matmuls twentyfold.
func BenchmarkLinearCrossEntropy(b *testing.B) {
	const n, d, v = 2048, 256, 52000
	for _, c := range []struct {
		name string
		loss func(h, w, t *Tensor) *Tensor
	}{
		{"chunked", func(h, w, t *Tensor) *Tensor { return LinearCrossEntropy(h, w, t, -100, 2048) }},
		{"plain", func(h, w, t *Tensor) *Tensor { return CrossEntropy(Linear(h, w, nil), t, -100, ReduceMean) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchenv.SetThreads(b, SetNumThreads)
			WithScope(func(*Scope) {
				h0, w, target := lceInputs(3, n, d, v, -100, Float32)
				h := h0.Detach().MulScalar(1.0 / 16).SetRequiresGrad(true)
				for b.Loop() {
					WithScope(func(*Scope) {
						c.loss(h, w, target).Backward()
						h.ZeroGrad()
						w.ZeroGrad()
					})
				}
			})
		})
	}
}
