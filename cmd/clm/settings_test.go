package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// snapshot lists a folder's files with sizes and modification times.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			out = append(out, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// badSetting is one refused command line of TestBadSettings and a fragment
// of the error it must give.
type badSetting struct {
	args []string
	want string
}

// badSettingCases are the refused command lines of TestBadSettings, given
// the good experiment file and a finished run in the folder "run": bad
// values of the keys, then sizes too large to fit, then bad sample flags.
func badSettingCases(good string) []badSetting {
	var cases []badSetting
	set := func(key, value, want string) {
		cases = append(cases, badSetting{[]string{"-config", good, "-run-dir", "run", "-set", key + "=" + value}, want})
	}
	for _, k := range []string{"lr", "weight_decay", "warmup_ratio", "power", "lr_end", "beta1", "beta2", "eps", "max_grad_norm", "epochs", "dist_timeout"} {
		for _, v := range []string{"nan", "inf", "-1"} {
			set("train."+k, v, "train."+k+": ")
		}
	}
	for _, k := range []string{"mlp_width_mult", "layer_norm_epsilon", "resid_pdrop", "attn_pdrop", "embd_pdrop",
		"attn_block_resid_gain", "attn_block_skip_gain", "mlp_block_resid_gain", "mlp_block_skip_gain", "attn_mat_resid_gain",
		"attn_mat_skip_gain", "centre_attn_gain", "value_resid_gain", "proj_resid_gain", "lrelu_neg_slope", "initializer_range",
		"value_skip_gain", "proj_skip_gain", "first_layer_value_resid_gain", "last_layer_proj_resid_gain",
		"val_proj_init_std", "query_init_std", "key_init_std", "mlp_proj_init_std"} {
		for _, v := range []string{"nan", "-inf"} {
			set("model."+k, v, "model."+k+": ")
		}
	}
	for _, k := range []string{"layer_norm_epsilon", "resid_pdrop", "initializer_range", "mlp_proj_init_std", "mlp_width_mult"} {
		set("model."+k, "-0.5", "model."+k+": ")
	}
	for _, c := range [][3]string{
		{"train.warmup_ratio", "1", "train.warmup_ratio"}, {"train.lr_end", "0.5", "train.lr_end"}, {"train.beta2", "1", "train.beta2"},
		{"train.threads", "100000", "train.threads"}, {"train.threads", "-2", "train.threads"}, {"train.micro_batch", "100000000", "train.micro_batch"},
		{"train.micro_batch", "0", "train.micro_batch"}, {"train.max_steps", "-1", "train.max_steps"}, {"train.save_every", "0", "train.save_every"},
		{"data.num_token_mult", "nan", "data.num_token_mult"}, {"data.num_token_mult", "0", "data.num_token_mult"},
		{"data.num_token_mult", "1e12", "data.num_token_mult"}, {"data.valid_fraction", "inf", "data.valid_fraction"},
		{"data.valid_fraction", "1.5", "data.valid_fraction"}, {"data.valid_docs", "-3", "data.valid_docs"},
		{"data.tokenizer_vocab", "100", "data.tokenizer_vocab"}, {"data.seed", "-1", "data.seed"},
		{"model.n_layer", "0", "model.n_layer"}, {"model.context_length", "4096", "model.context_length"},
		{"train.device", "tpu", "train.device"}, {"train.precision", "fp8", "train.precision"}, {"train.on_nan", "ignore", "train.on_nan"},
		{"train.optimizer", "sgd", "train.optimizer"}, {"train.schedule", "warp", "train.schedule"}, {"train.attention", "flash", "train.attention"},
		{"train.checkpoint_activations", "layer", "train.checkpoint_activations"}, {"train.fused_kernels", "maybe", "train.fused_kernels"},
		{"train.cpu_matmul", "mkl", "train.cpu_matmul: unknown engine \"mkl\" (want auto, onednn or blas)"},
	} {
		set(c[0], c[1], c[2])
	}
	cases = append(cases, hugeModelCases(good)...)
	return append(cases, badSampleFlagCases()...)
}

// hugeModelCases are sizes that pass the keys' own checks but cannot fit:
// refused with the estimate before anything is allocated, in folders of
// their own, huge0 to huge2.
func hugeModelCases(good string) []badSetting {
	var cases []badSetting
	for i, s := range [][]string{{"model.n_layer=99999999999"}, {"model.n_embd=1000000", "model.n_head=1"}, {"model.vocab_size=2000000000"}} {
		args := []string{"-config", good, "-run-dir", fmt.Sprintf("huge%d", i)}
		for _, kv := range s {
			args = append(args, "-set", kv)
		}
		cases = append(cases, badSetting{args, "need about"})
	}
	return cases
}

// badSampleFlagCases are `clm sample` runs on "run" with a bad flag.
func badSampleFlagCases() []badSetting {
	var cases []badSetting
	for _, c := range [][]string{{"-n", "-1"}, {"-n", "2000000"}, {"-temperature", "nan"}, {"-temperature", "-1"}, {"-temperature", "inf"}, {"-top-k", "-5"}} {
		cases = append(cases, badSetting{append([]string{"sample", "-ckpt", "run"}, c...), "sample: " + c[0]})
	}
	return cases
}

// checkBadSetting runs c in dir and checks that it is refused with one line
// `clm: ...` containing c.want, in under 5 s and with a peak RSS under 1 GB.
func checkBadSetting(t *testing.T, dir string, c badSetting) {
	t.Helper()
	cmd := exec.Command(clmBin, c.args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CLM_CACHE="+cacheDir(t))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err == nil {
		t.Fatalf("exit 0:\n%s", stderr.String())
	}
	out := strings.TrimSpace(stderr.String())
	if strings.Contains(out, "\n") || !strings.HasPrefix(out, "clm: ") || !strings.Contains(out, c.want) {
		t.Errorf("stderr %q: want one line `clm: ...` with %q", out, c.want)
	}
	if took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	if rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss; rss > 1<<20 {
		t.Errorf("peak RSS %d MB", rss>>10)
	}
}

// TestBadSettings: every float key of [train] and [model] given NaN, Inf or
// a negative value, absurd sizes and thread counts, bad data settings and
// bad `clm sample` flags are each refused with one line `clm: ...` naming
// the key, a non-zero exit, nothing written into the existing run folder,
// in under 5 s and 1 GB.
func TestBadSettings(t *testing.T) {
	dir := t.TempDir()
	good := write(t, filepath.Join(dir, "good.toml"), microExperiment)
	if _, stderr, code := clm(t, dir, "-config", good, "-run-dir", "run"); code != 0 {
		t.Fatalf("fixture run: %d\n%s", code, stderr)
	}
	cases := badSettingCases(good)
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	before := snapshot(t, filepath.Join(dir, "run"))
	for i, c := range cases {
		t.Run(fmt.Sprintf("%02d %s", i, strings.Join(c.args[max(0, len(c.args)-2):], " ")), func(t *testing.T) {
			checkBadSetting(t, dir, c)
		})
	}
	if after := snapshot(t, filepath.Join(dir, "run")); after != before {
		t.Errorf("the run folder changed:\nbefore\n%s\nafter\n%s", before, after)
	}
	for i := 0; i < 3; i++ {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("huge%d", i))); err == nil {
			t.Errorf("a refused start left folder huge%d", i)
		}
	}
}
