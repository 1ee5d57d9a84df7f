package train

import (
	"encoding/json"
	"testing"

	"clm/internal/testkit/pyref"
)

// TestDefaultsMatchTrainingArguments: the optimizer and clipping defaults
// clm takes over from HF Trainer equal transformers.TrainingArguments' own
// (the trajectory parity passes them to the reference explicitly, so it
// would not notice a drifted default).
func TestDefaultsMatchTrainingArguments(t *testing.T) {
	var hf map[string]float64
	if err := json.Unmarshal(pyref.Run(t, "hf_defaults.py"), &hf); err != nil {
		t.Fatal(err)
	}
	d := Defaults().Train
	cases := []struct {
		key string
		got float64
	}{
		{"adam_beta1", d.Beta1}, {"adam_beta2", d.Beta2}, {"adam_epsilon", d.Eps}, {"max_grad_norm", d.MaxGradNorm},
	}
	for _, c := range cases {
		want, ok := hf[c.key]
		if !ok || c.got != want {
			t.Errorf("%s: clm's default %v, TrainingArguments' %v (present %v)", c.key, c.got, want, ok)
		}
	}
}
