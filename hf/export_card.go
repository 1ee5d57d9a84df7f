package hf

import (
	"fmt"
	"math"
	"strings"
)

// modelCard is the README.md of an export: what was trained, how far, how
// well, and how to load it.
func modelCard(c Card, m ModelKeys, plain bool, why string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("---")
	w("library_name: transformers")
	w("pipeline_tag: text-generation")
	w("tags: [clm, code, gpt2]")
	w("---")
	w("")
	w("# %s", c.Experiment)
	w("")
	w("A GPT-2-style language model of code trained with clm and exported by `clm export`.")
	w("")
	w("| | |")
	w("| --- | --- |")
	w("| experiment | %s |", c.Experiment)
	w("| model preset | `%s`: %s |", c.Preset, c.Source)
	w("| size | %d layers × %v wide, %v heads, vocabulary %v, context %v; %d parameters |",
		layers(m), m["n_embd"], m["n_head"], m["vocab_size"], m["context_length"], c.Params)
	w("| training | %d optimizer steps, %d tokens |", c.Step, c.Tokens)
	if math.IsNaN(c.EvalLoss) {
		w("| eval loss | none logged |")
	} else {
		w("| eval loss | %.4f at step %d (perplexity %.2f) |", c.EvalLoss, c.EvalStep, math.Exp(c.EvalLoss))
	}
	w("")
	w("## Loading")
	w("")
	w("```python")
	w("from transformers import AutoModelForCausalLM, AutoTokenizer")
	w("")
	w("DIR = \"path/to/this/folder\"")
	if plain {
		w("model = AutoModelForCausalLM.from_pretrained(DIR)  # a GPT2LMHeadModel")
		w("tok = AutoTokenizer.from_pretrained(DIR)")
	} else {
		w("model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)")
		w("tok = AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)  # it reads config.json too")
	}
	w("ids = tok(\"def fib(n):\", return_tensors=\"pt\").input_ids")
	w("print(tok.decode(model.generate(ids, do_sample=False, max_new_tokens=40)[0]))")
	w("```")
	w("")
	if plain {
		w("The model is a plain GPT-2 (Pre-LN, LayerNorm, %v): transformers' `GPT2LMHeadModel` computes it exactly.", m["activation_function"])
	} else {
		w("The block is not a plain GPT-2 (%s), so the folder carries its model as remote code: "+
			"`modeling_clm.py` (shaped attention, Eq. 5, in `Attention`; the reparameterised value and projection, "+
			"Eq. 6, in `ReparamConv1D`) and `configuration_clm.py`. It has no key/value cache: `generate()` runs the "+
			"whole sequence, cut to its last %v tokens, at each step, as `clm sample` does; padded batches are refused.", why, m["context_length"])
	}
	w("")
	w("Tokens: `<|endoftext|>` is the bos, eos and pad token. The loss of `model(ids, labels=ids)` ignores labels of -100; " +
		"clm's training and `clm eval` also ignore labels equal to `<|endoftext|>`, as the original's collator does.")
	w("")
	w("Papers: He & Hofmann, *Simplifying Transformer Blocks* (ICLR 2024); He et al., *Understanding and Minimising " +
		"Outlier Features in Transformer Training* (NeurIPS 2024).")
	return b.String()
}
