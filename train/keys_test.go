package train

import (
	"strings"
	"testing"
)

func TestDidYouMean(t *testing.T) {
	for _, c := range []struct{ key, want string }{
		{"trian", "train"},
		{"train.lrr", "train.lr"},
		{"train.warmup", "train.warmup_ratio"},
		{"model.n_layr", "model.n_layer"},
		{"data.num_tokens_mult", "data.num_token_mult"},
		{"train.optim.momentun", "train.optim.momentum"},
		{"zzzzzzzzzzzz", ""},
	} {
		got := didYouMean(c.key)
		if c.want == "" && got != "" || c.want != "" && got != ` (did you mean "`+c.want+`"?)` {
			t.Errorf("didYouMean(%q) = %q, want %q", c.key, got, c.want)
		}
	}
	for _, k := range []string{"name", "model.preset", "model.n_layer", "train.optim.momentum", "data.tokenizer", "report.every"} {
		if !strings.Contains(strings.Join(Keys(), " "), k) {
			t.Errorf("Keys() lacks %s", k)
		}
	}
}
