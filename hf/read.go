// Package hf reads Hugging Face model folders of GPT-2-family checkpoints
// as clm's models: a transformers GPT2LMHeadModel, a checkpoint of the
// original code (the same layout with the original's model keys in
// config.json) and clm's own export. It maps config.json onto
// model.Config (refusing, by key, what clm's blocks cannot express) and
// the weights onto clm's parameter names; it allocates no tensor (train
// loads what it returns).
package hf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"clm/model"
	"clm/safetensors"
)

// Files of a model folder.
const (
	ConfigFile        = "config.json"
	WeightsFile       = "model.safetensors"
	WeightsIndexFile  = "model.safetensors.index.json"
	TokenizerFile     = "tokenizer.json"
	pytorchWeights    = "pytorch_model.bin"
	runCheckpointMark = "state.json" // a clm checkpoint folder's
)

// Folder is a Hugging Face model folder that maps onto a clm model.
type Folder struct {
	// Dir is the folder.
	Dir string
	// Format is what config.json says the checkpoint is.
	Format Format
	// Config is the model, validated; context_length is the model's
	// n_positions unless config.json says otherwise.
	Config model.Config
	// Tokenizer is the folder's tokenizer.json (the one the model was
	// trained with).
	Tokenizer string
	// weights are the safetensors files, in order.
	weights []string
	// untied is config.json's tie_word_embeddings = false.
	untied bool
}

// IsFolder reports whether dir looks like a Hugging Face model folder: it
// holds a config.json and is not a clm checkpoint folder.
func IsFolder(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, runCheckpointMark))
	return err != nil
}

// Open reads a model folder's config.json, finds its weights and its
// tokenizer, and refuses, with one line that names the file and key, what
// clm cannot open.
func Open(dir string) (*Folder, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg, format, err := ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	f := &Folder{Dir: dir, Format: format, Config: cfg}
	var tie struct {
		Tie *bool `json:"tie_word_embeddings"`
	}
	if json.Unmarshal(raw, &tie) == nil && tie.Tie != nil && !*tie.Tie {
		f.untied = true
	}
	if f.weights, err = weightFiles(dir); err != nil {
		return nil, err
	}
	f.Tokenizer = filepath.Join(dir, TokenizerFile)
	if _, err := os.Stat(f.Tokenizer); err != nil {
		return nil, fmt.Errorf("%s has no %s: clm evaluates and samples a model with its own tokenizer only (save it beside the model with tokenizer.save_pretrained)", dir, TokenizerFile)
	}
	return f, nil
}

// weightFiles lists the folder's safetensors weights: model.safetensors,
// or the shards of model.safetensors.index.json. PyTorch pickles are
// refused with the conversion that makes safetensors.
func weightFiles(dir string) ([]string, error) {
	single := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(single); err == nil {
		return []string{single}, nil
	}
	index := filepath.Join(dir, WeightsIndexFile)
	if b, err := os.ReadFile(index); err == nil {
		return indexShards(dir, index, b)
	}
	if _, err := os.Stat(filepath.Join(dir, pytorchWeights)); err == nil {
		return nil, fmt.Errorf("%s holds %s (a PyTorch pickle, which clm does not read), not %s; convert it: "+
			`python -c "import sys; from transformers import AutoModelForCausalLM as M; M.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1])" %s`,
			dir, pytorchWeights, WeightsFile, dir)
	}
	return nil, fmt.Errorf("%s has no %s (nor %s)", dir, WeightsFile, WeightsIndexFile)
}

// ShardNames lists the shard files that a model.safetensors.index.json
// names, in order of first appearance.
func ShardNames(index []byte) ([]string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(index, &idx); err != nil || len(idx.WeightMap) == 0 {
		return nil, errors.New("want a JSON object with a weight_map of tensor name → shard file")
	}
	seen := map[string]bool{}
	var names []string
	for _, k := range sortedKeys(idx.WeightMap) {
		s := idx.WeightMap[k]
		if s == "" || strings.ContainsAny(s, `/\`) || s == "." || s == ".." || !strings.HasSuffix(s, ".safetensors") {
			return nil, fmt.Errorf("weight_map[%q]: %q is not a safetensors file of the folder", k, s)
		}
		if !seen[s] {
			seen[s] = true
			names = append(names, s)
		}
	}
	return names, nil
}

func indexShards(dir, index string, b []byte) ([]string, error) {
	names, err := ShardNames(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
	}
	return paths, nil
}

// Weights are a folder's tensors under clm's parameter names.
type Weights struct {
	// Tensors are the parameters the folder holds, in the model's order.
	Tensors []safetensors.Tensor
	// KeepInit names the parameters the folder does not hold and that
	// keep the value the model's config gives them: the fixed gains of
	// clm's blocks (1 in GPT-2's) and the frozen zero biases.
	KeepInit []string
	// FrozenNonZero names the frozen parameters the folder gives non-zero
	// values (a GPT-2's trained biases where clm's blocks train none):
	// they keep those values, and training leaves them as they are.
	FrozenNonZero []string
}

// attnBuffer is the causal-mask buffer of older GPT-2 checkpoints; cAttn
// is GPT-2's fused query/key/value projection.
var attnBuffer = regexp.MustCompile(`^transformer\.h\.\d+\.attn\.(bias|masked_bias)$`)
var cAttn = regexp.MustCompile(`^(transformer\.h\.\d+\.attn\.)c_attn\.(weight|bias)$`)

// Weights reads the folder's tensors and maps them onto the parameters of
// f.Config: names with or without the "transformer." prefix; GPT-2's
// c_attn [d, 3d] = [W_q | W_k | W_v] split into qk_attn (the first 2d
// columns) and v_attn (the last d); the attention mask buffers of older
// checkpoints dropped; lm_head.weight accepted only as the tied copy of
// wte. A tensor missing, extra or of another shape is an error that names
// it.
func (f *Folder) Weights() (*Weights, error) {
	have, closeAll, err := f.readAll()
	defer closeAll()
	if err != nil {
		return nil, err
	}
	if err := f.checkHead(have); err != nil {
		return nil, err
	}
	w := &Weights{}
	var problems []string
	for _, spec := range f.Config.Params() {
		t, ok := have[spec.Name]
		delete(have, spec.Name)
		switch {
		case !ok && (spec.Role == model.RoleGain || (spec.Role == model.RoleBias && !spec.Trainable)):
			w.KeepInit = append(w.KeepInit, spec.Name)
			continue
		case !ok:
			problems = append(problems, fmt.Sprintf("missing %s %v", spec.Name, spec.Shape))
			continue
		case !equalShape(t.Shape, spec.Shape):
			problems = append(problems, fmt.Sprintf("%s has shape %v, the model of config.json %v", spec.Name, t.Shape, spec.Shape))
			continue
		case !isFloat(t.DType):
			problems = append(problems, fmt.Sprintf("%s has dtype %s, not floating point", spec.Name, t.DType))
			continue
		}
		if !spec.Trainable && spec.Role == model.RoleBias && !allZero(t.Data) {
			w.FrozenNonZero = append(w.FrozenNonZero, spec.Name)
		}
		w.Tensors = append(w.Tensors, t)
	}
	for _, name := range sortedKeys(have) {
		problems = append(problems, "unexpected "+name)
	}
	if len(problems) > 0 {
		if len(problems) > 6 {
			problems = append(problems[:6], fmt.Sprintf("and %d more", len(problems)-6))
		}
		return nil, fmt.Errorf("%s: the weights do not match its config.json: %s", f.Dir, strings.Join(problems, "; "))
	}
	return w, nil
}

// checkHead accepts lm_head.weight only as a copy of wte (clm ties them)
// and refuses an untied config without one.
func (f *Folder) checkHead(have map[string]safetensors.Tensor) error {
	head, ok := have["lm_head.weight"]
	delete(have, "lm_head.weight")
	wte := have["transformer.wte.weight"]
	switch {
	case ok && (head.DType != wte.DType || !equalShape(head.Shape, wte.Shape) || !bytes.Equal(head.Data, wte.Data)):
		return fmt.Errorf("%s: lm_head.weight differs from transformer.wte.weight: clm ties the output head to the token embedding (tie_word_embeddings = true)", f.Dir)
	case !ok && f.untied:
		return fmt.Errorf("%s: %s: tie_word_embeddings = false and no lm_head.weight: clm ties the output head to the token embedding", f.Dir, ConfigFile)
	}
	return nil
}

// readAll reads every tensor of the weight files under clm's names.
func (f *Folder) readAll() (map[string]safetensors.Tensor, func(), error) {
	var files []*safetensors.File
	closeAll := func() {
		for _, sf := range files {
			sf.Close()
		}
	}
	have := map[string]safetensors.Tensor{}
	for _, path := range f.weights {
		sf, err := safetensors.Open(path)
		if err != nil {
			return nil, closeAll, err
		}
		files = append(files, sf)
		for _, name := range sf.Names() {
			t, err := sf.Tensor(name)
			if err != nil {
				return nil, closeAll, err
			}
			t.Data = bytes.Clone(t.Data) // the file is unmapped on return
			if err := add(have, t, path); err != nil {
				return nil, closeAll, err
			}
		}
	}
	return have, closeAll, nil
}

// add files one tensor under its clm name(s).
func add(have map[string]safetensors.Tensor, t safetensors.Tensor, path string) error {
	if t.Name != "lm_head.weight" && !strings.HasPrefix(t.Name, "transformer.") {
		t.Name = "transformer." + t.Name
	}
	if attnBuffer.MatchString(t.Name) {
		return nil // the causal mask of older GPT-2 checkpoints
	}
	var parts []safetensors.Tensor
	if m := cAttn.FindStringSubmatch(t.Name); m != nil {
		qk, v, err := splitQKV(t)
		if err != nil {
			return fmt.Errorf("%s: %s: %v", path, t.Name, err)
		}
		qk.Name, v.Name = m[1]+"qk_attn."+m[2], m[1]+"v_attn."+m[2]
		parts = append(parts, qk, v)
	} else {
		parts = append(parts, t)
	}
	for _, p := range parts {
		if _, dup := have[p.Name]; dup {
			return fmt.Errorf("%s: %s is in the weights twice", path, p.Name)
		}
		have[p.Name] = p
	}
	return nil
}

// splitQKV splits c_attn's weight [d, 3d] (or bias [3d]) into [d, 2d] (W_q
// and W_k, qk_attn) and [d, d] (W_v, v_attn).
func splitQKV(t safetensors.Tensor) (qk, v safetensors.Tensor, err error) {
	es := int64(t.DType.Size())
	var rows, cols int64
	switch len(t.Shape) {
	case 1:
		rows, cols = 1, t.Shape[0]
	case 2:
		rows, cols = t.Shape[0], t.Shape[1]
	default:
		return qk, v, fmt.Errorf("shape %v: want [d, 3d] or [3d]", t.Shape)
	}
	if cols%3 != 0 || es == 0 || int64(len(t.Data)) != rows*cols*es {
		return qk, v, fmt.Errorf("shape %v: want [d, 3d] or [3d]", t.Shape)
	}
	d := cols / 3
	qk = safetensors.Tensor{DType: t.DType, Data: make([]byte, 0, rows*2*d*es)}
	v = safetensors.Tensor{DType: t.DType, Data: make([]byte, 0, rows*d*es)}
	for r := int64(0); r < rows; r++ {
		row := t.Data[r*cols*es : (r+1)*cols*es]
		qk.Data = append(qk.Data, row[:2*d*es]...)
		v.Data = append(v.Data, row[2*d*es:]...)
	}
	if len(t.Shape) == 1 {
		qk.Shape, v.Shape = []int64{2 * d}, []int64{d}
	} else {
		qk.Shape, v.Shape = []int64{rows, 2 * d}, []int64{rows, d}
	}
	return qk, v, nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func isFloat(d safetensors.DType) bool {
	return d == safetensors.F32 || d == safetensors.F64 || d == safetensors.F16 || d == safetensors.BF16
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// sortedKeys is m's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
