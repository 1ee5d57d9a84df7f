package torch

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// attentionCase is one FusedCausalAttention input: [B, H, T, D], the
// tensors either contiguous or, as the model's heads, permuted views of
// [B, T, H, D].
type attentionCase struct {
	name       string
	B, H, T, D int64
	permuted   bool
}

var attentionCases = []attentionCase{
	{"model_heads", 2, 3, 128, 32, true},      // two full query blocks
	{"tail_block", 1, 2, 150, 16, true},       // a partial third block
	{"contiguous_odd", 2, 2, 37, 5, false},    // D below the lanes, one block
	{"t1", 3, 1, 1, 8, true},                  // one position
	{"wide_heads", 1, 1, 70, 64, false},       // the paper's head width
	{"many_slices_short", 4, 8, 17, 32, true}, // more slices than threads
}

// attentionLeaves returns q, k, v (views) and their leaves in dt.
func attentionLeaves(c attentionCase, dt DType) (qkv, leaves []*Tensor) {
	for i := 0; i < 3; i++ {
		if c.permuted {
			l := fusedLeaf([]int64{c.B, c.T, c.H, c.D}, dt, CPU, true)
			qkv, leaves = append(qkv, l.Permute(0, 2, 1, 3)), append(leaves, l)
			continue
		}
		l := fusedLeaf([]int64{c.B, c.H, c.T, c.D}, dt, CPU, true)
		qkv, leaves = append(qkv, l), append(leaves, l)
	}
	return qkv, leaves
}

// attentionRun runs f on the case's tensors in dt (the same values at every
// dt for one seed) and returns the output and the leaves' gradients.
func attentionRun(c attentionCase, seed uint64, dt DType, f func(q, k, v *Tensor) *Tensor) fusedRun {
	ManualSeed(seed)
	qkv, leaves := attentionLeaves(c, dt)
	gout := Randn([]int64{c.B, c.H, c.T, c.D}, Float64, CPU)
	return evalRun(fusedModes[0], CPU, leaves, gout, func() *Tensor { return f(qkv[0], qkv[1], qkv[2]) })
}

func sdpaCausal(q, k, v *Tensor) *Tensor { return SDPA(q, k, v, nil, 0, true, 0) }

// attentionTensors name what fusedRun.tensors() returns for attention.
var attentionTensors = []string{"output", "dq", "dk", "dv"}

// TestFusedCausalAttention holds clm's float32 kernels to SDPA in float64
// on the same values, forward and backward, no further from it than
// float32's rounding allows; SDPA's own float32 error is logged beside.
func TestFusedCausalAttention(t *testing.T) {
	leakCheck(t)
	if !FusedCausalAttentionNative() {
		t.Skip("this libtorch exports no sgemm_: FusedCausalAttention runs SDPA")
	}
	const tol = 2e-6 // float32 rounding: both kernels are within 1e-6 on these cases
	for ci, c := range attentionCases {
		t.Run(c.name, func(t *testing.T) {
			WithScope(func(*Scope) {
				seed := uint64(300 + ci)
				got := attentionRun(c, seed, Float32, FusedCausalAttention)
				sdpa := attentionRun(c, seed, Float32, sdpaCausal)
				want := attentionRun(c, seed, Float64, sdpaCausal)
				g := got.tensors()
				s := sdpa.tensors()
				w := want.tensors()
				for i := range w {
					if g[i].DType() != Float32 {
						t.Fatalf("%s: dtype %v, want float32", attentionTensors[i], g[i].DType())
					}
					e, es := fusedErr(g[i].ToDType(Float64), w[i]), fusedErr(s[i].ToDType(Float64), w[i])
					if !(e <= tol) {
						t.Errorf("%s: error %.3g against SDPA in float64 (tolerance %g; SDPA in float32: %.3g)", attentionTensors[i], e, tol, es)
					}
					t.Logf("%s: error %.3g (SDPA in float32: %.3g)", attentionTensors[i], e, es)
				}
			})
		})
	}
}

// attentionISAs are the instruction sets of the attention's row loops.
var attentionISAs = []string{"DEFAULT", "AVX2", "AVX512"}

// TestFusedCausalAttentionISAs: the row loops compiled for each instruction
// set this CPU runs give the same bits, forward and backward, on every case,
// and on scores wide enough that the exponential underflows.
func TestFusedCausalAttentionISAs(t *testing.T) {
	leakCheck(t)
	if !FusedCausalAttentionNative() {
		t.Skip("this libtorch exports no sgemm_: FusedCausalAttention runs SDPA")
	}
	orig := FusedAttentionISA()
	t.Cleanup(func() { useAttentionISA(orig) })
	wide := func(q, k, v *Tensor) *Tensor { return FusedCausalAttention(q.MulScalar(40), k, v) }
	kinds := []struct {
		name string
		f    func(q, k, v *Tensor) *Tensor
	}{{"plain", FusedCausalAttention}, {"wide_scores", wide}}
	// run returns every case's output and gradients, named.
	run := func() (names []string, out [][]byte) {
		for ci, c := range attentionCases {
			for _, k := range kinds {
				b := fusedBytes(func() []*Tensor { return attentionRun(c, uint64(500+ci), Float32, k.f).tensors() })
				for i := range b {
					names = append(names, c.name+"/"+k.name+"/"+attentionTensors[i])
				}
				out = append(out, b...)
			}
		}
		return names, out
	}
	var want [][]byte
	ran := 0
	for _, isa := range attentionISAs {
		if !useAttentionISA(isa) {
			t.Logf("%s: not on this CPU or build", isa)
			continue
		}
		if got := FusedAttentionISA(); got != isa {
			t.Fatalf("FusedAttentionISA() = %q after choosing %q", got, isa)
		}
		names, got := run()
		ran++
		if want == nil {
			want = got
			continue
		}
		var differ []string
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				differ = append(differ, names[i])
			}
		}
		if len(differ) > 0 {
			t.Errorf("%s: %d of %d tensors differ from %s's bits, first %s", isa, len(differ), len(want), attentionISAs[0], differ[0])
		}
	}
	if ran < 2 {
		t.Skipf("only %d instruction set runs here: nothing to compare", ran)
	}
}

// TestFusedAttentionISAFollowsATen: the process runs the row loops for the
// capability libtorch runs its own kernels with, which ATEN_CPU_CAPABILITY
// lowers (a child process each: the choice is made once).
func TestFusedAttentionISAFollowsATen(t *testing.T) {
	if os.Getenv("CLM_TEST_ISA_CHILD") != "" {
		os.Stdout.WriteString("isa=" + FusedAttentionISA() + "\n")
		return
	}
	orig := FusedAttentionISA()
	t.Cleanup(func() { useAttentionISA(orig) })
	for _, c := range []struct{ env, want string }{{"default", "DEFAULT"}, {"avx2", "AVX2"}, {"avx512", "AVX512"}} {
		if !useAttentionISA(c.want) {
			continue // this CPU lacks it; libtorch's choice would be lower
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestFusedAttentionISAFollowsATen$")
		cmd.Env = append(os.Environ(), "CLM_TEST_ISA_CHILD=1", "ATEN_CPU_CAPABILITY="+c.env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ATEN_CPU_CAPABILITY=%s: %v\n%s", c.env, err, out)
		}
		if !strings.Contains(string(out), "isa="+c.want+"\n") {
			t.Errorf("ATEN_CPU_CAPABILITY=%s: the child says %q, want isa=%s", c.env, out, c.want)
		}
	}
}

// TestFusedCausalAttentionFallback: what clm's kernels do not take (float64
// here) is SDPA itself, to the bit.
func TestFusedCausalAttentionFallback(t *testing.T) {
	leakCheck(t)
	c := attentionCases[1]
	WithScope(func(*Scope) {
		got := fusedBytes(func() []*Tensor {
			r := attentionRun(c, 7, Float64, FusedCausalAttention)
			return r.tensors()
		})
		want := fusedBytes(func() []*Tensor {
			r := attentionRun(c, 7, Float64, sdpaCausal)
			return r.tensors()
		})
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("float64: tensor %d (output, then dq, dk, dv) differs from SDPA's", i)
			}
		}
	})
}

// TestFusedCausalAttentionErrors: a shape SDPA refuses is an error, not a
// crash.
func TestFusedCausalAttentionErrors(t *testing.T) {
	leakCheck(t)
	WithScope(func(*Scope) {
		q := Randn([]int64{2, 3, 8, 4}, Float32, CPU)
		k := Randn([]int64{2, 3, 8, 5}, Float32, CPU)
		if err := Try(func() { FusedCausalAttention(q, k, k) }); err == nil {
			t.Fatal("q [2 3 8 4] against k [2 3 8 5]: no error")
		}
	})
}
