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
	engine := "matmul    float32 CPU products by oneDNN"
	if torch.OneDNNMatmulUnusable() != "" {
		engine = "matmul    float32 CPU products by the BLAS (oneDNN is not offered: "
	}
	if !strings.Contains(out, "\n"+engine) {
		t.Errorf("clm version lacks %q (as this process sees the shim):\n%s", engine, out)
	}
	out, _, code = clm(t, dir, "version", "-json")
	var got struct {
		Clm   version.Info `json:"clm"`
		Torch torch.Report `json:"libtorch"`
		CPUs  int          `json:"cpus"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("clm version -json: exit %d, %v:\n%s", code, err, out)
	}
	want, err := torch.ReadReport()
	if err != nil {
		t.Fatal(err)
	}
	if got.Torch.Torch != want.Torch || got.Torch.CUDABuild != want.CUDABuild || got.Torch.Shim == "" || got.CPUs < 1 ||
		got.Clm.Release != version.Release {
		t.Errorf("clm version -json = %+v, the binding reports %+v", got, want)
	}
	_, errOut, code = clm(t, dir, "version", "extra")
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, `"extra"`) {
		t.Errorf("clm version extra: exit %d, stderr %q", code, errOut)
	}
}
