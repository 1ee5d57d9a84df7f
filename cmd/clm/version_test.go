package main

import (
	"encoding/json"
	"strings"
	"testing"

	"clm/internal/version"
	"clm/torch"
)

// TestVersion: `clm version` says what a bug report needs, as lines and as
// JSON, and agrees with the binding it runs on.
func TestVersion(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := clm(t, dir, "version")
	if code != 0 || errOut != "" {
		t.Fatalf("clm version: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"clm       " + version.Release + " (commit ", "libtorch  " + torch.Version() + "  ",
		"shim      ", "CUDA      ", "devices   ", "threads   ", "matmul    float32 CPU products by "} {
		if !strings.Contains(out, "\n"+want) && !strings.HasPrefix(out, want) {
			t.Errorf("clm version lacks %q:\n%s", want, out)
		}
	}
	auto, why := torch.AutoCPUMatmul()
	engine := "matmul    float32 CPU products by oneDNN (train.cpu_matmul auto: " + why + ";"
	if auto == torch.MatmulBLAS {
		engine = "matmul    float32 CPU products by the BLAS (train.cpu_matmul auto: " + why + ")\n"
	}
	if !strings.Contains(out, "\n"+engine) {
		t.Errorf("clm version lacks %q (as this process sees the shim):\n%s", engine, out)
	}
	if attn := "\nattention " + attentionLine(torch.FusedCausalAttentionNative(), torch.FusedAttentionISA()) + "\n"; !strings.Contains(out, attn) {
		t.Errorf("clm version lacks %q (as this process sees the shim):\n%s", attn, out)
	}
	out, _, code = clm(t, dir, "version", "-json")
	var got struct {
		Clm   version.Info `json:"clm"`
		Torch torch.Report `json:"libtorch"`
		CPUs  int          `json:"cpus"`
		Attn  *bool        `json:"cpu_attention_clm"`
		ISA   string       `json:"cpu_attention_isa"`
		MM    string       `json:"cpu_matmul"`
		MMWhy string       `json:"cpu_matmul_why"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("clm version -json: exit %d, %v:\n%s", code, err, out)
	}
	want, err := torch.ReadReport()
	if err != nil {
		t.Fatal(err)
	}
	if got.Torch.Torch != want.Torch || got.Torch.CUDABuild != want.CUDABuild || got.Torch.Shim == "" || got.CPUs < 1 ||
		got.Clm.Release != version.Release || got.Torch.KernelThreads != got.Torch.Threads ||
		got.Attn == nil || *got.Attn != torch.FusedCausalAttentionNative() || got.ISA != torch.FusedAttentionISA() ||
		got.MM != auto.String() || got.MMWhy != why {
		t.Errorf("clm version -json = %+v, the binding reports %+v", got, want)
	}
	_, errOut, code = clm(t, dir, "version", "extra")
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, `"extra"`) {
		t.Errorf("clm version extra: exit %d, stderr %q", code, errOut)
	}
}

// TestThreadsLine: the threads line names clm's kernels' threads, and the
// way out where the shim gives them fewer than libtorch's ops.
func TestThreadsLine(t *testing.T) {
	cases := []struct {
		r      torch.Report
		want   string
		wayOut bool
	}{
		{torch.Report{Threads: 2, KernelThreads: 2, Parallel: "OpenMP"}, "2 (OpenMP) on ", false},
		{torch.Report{Threads: 4, KernelThreads: 1, Parallel: "OpenMP"}, "clm's kernels on 1 (a shim built without OpenMP", true},
		{torch.Report{Threads: 1, KernelThreads: 1, Parallel: "OpenMP"}, "clm's kernels on 1", false},
	}
	for _, c := range cases {
		got := threadsLine(c.r)
		if !strings.Contains(got, c.want) || strings.Contains(got, "make setup") != c.wayOut {
			t.Errorf("threadsLine(%+v) = %q, want %q (way out %v)", c.r, got, c.want, c.wayOut)
		}
	}
}

// TestAttentionLine: the attention line names clm's kernels where libtorch
// exports the BLAS they call, and SDPA with the reason where it does not.
func TestAttentionLine(t *testing.T) {
	for _, c := range []struct {
		native bool
		want   string
	}{{true, "by clm's kernels, row loops for AVX2 ("}, {false, "by libtorch's SDPA (this libtorch exports no sgemm_"}} {
		if got := attentionLine(c.native, "AVX2"); !strings.Contains(got, c.want) {
			t.Errorf("attentionLine(%v, AVX2) = %q, want it to contain %q", c.native, got, c.want)
		}
	}
}
