package bpe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// MarshalJSON writes the tokenizer as a Hugging Face tokenizer.json document
// (the layout tokenizers 0.2x saves: merges as [a, b] pairs).
func (t *Tokenizer) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	str := func(s string) {
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	for i, a := range t.added {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n    {\n      \"id\": %d,\n      \"content\": ", a.ID)
		str(a.Content)
		fmt.Fprintf(&b, ",\n      \"single_word\": %t,\n      \"lstrip\": %t,\n      \"rstrip\": %t,\n      \"normalized\": %t,\n      \"special\": %t\n    }",
			a.SingleWord, a.LStrip, a.RStrip, a.Normalized, a.Special)
	}
	if len(t.added) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("],\n  \"normalizer\": null,\n")
	fmt.Fprintf(&b, "  \"pre_tokenizer\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": %t,\n    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n", t.addPrefix)
	b.WriteString("  \"post_processor\": ")
	if len(t.post.raw) > 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, t.post.raw); err != nil {
			return nil, err
		}
		b.Write(c.Bytes())
	} else {
		b.WriteString("{\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n    \"trim_offsets\": false,\n    \"use_regex\": true\n  }")
	}
	b.WriteString(",\n  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n")
	fmt.Fprintf(&b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %t,\n    \"vocab\": {", t.ignoreMerges)
	isAdded := map[int32]bool{}
	for _, a := range t.added {
		isAdded[a.ID] = true
	}
	first := true
	for id, s := range t.tokens {
		if s == "" || (isAdded[int32(id)] && !t.inModelVocab(s, int32(id))) {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString("\n      ")
		str(s)
		fmt.Fprintf(&b, ": %d", id)
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for i, m := range t.mergeList {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      [\n        ")
		str(t.tokens[m[0]])
		b.WriteString(",\n        ")
		str(t.tokens[m[1]])
		b.WriteString("\n      ]")
	}
	b.WriteString("\n    ]\n  }\n}\n")
	return b.Bytes(), nil
}

// inModelVocab reports whether an added token also belongs to the model's
// vocabulary. Trained tokenizers keep special tokens in both, as Hugging
// Face's trainer does; tokenizers loaded from files record which.
func (t *Tokenizer) inModelVocab(s string, id int32) bool {
	return t.modelVocab == nil || t.modelVocab[id]
}

// Save writes the tokenizer to path as tokenizer.json (atomically).
func (t *Tokenizer) Save(path string) error {
	b, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("tokenizer %s: %v", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokenizer-*.json")
	if err != nil {
		return fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return nil
}
