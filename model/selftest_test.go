package model_test

import (
	"bytes"
	"testing"

	"clm/internal/testkit/pyref"
)

// TestReferenceSelfTest runs `scripts/reference/model.py selftest`, which
// checks the reference model against Hugging Face's GPT2LMHeadModel
// (randomly initialised from a GPT2Config, so nothing is downloaded; the
// Hub is switched off to make sure) in float64: logits, loss and hidden
// states. The Go parity tests trust the reference; this ties the reference
// to Hugging Face.
func TestReferenceSelfTest(t *testing.T) {
	out := pyref.RunEnv(t, []string{"HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"}, "model.py", "selftest")
	if !bytes.Contains(out, []byte("selftest: matches HF GPT-2")) {
		t.Fatalf("model.py selftest did not report a match:\n%s", out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}
