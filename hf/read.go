package hf

// Import: a Hugging Face model folder of a GPT-2-family checkpoint (a
// transformers GPT2LMHeadModel, a checkpoint of the original code, which
// has the same layout with its model yaml's keys in config.json, or clm's
// own export) read as clm's model keys and weights under clm's names;
// train resolves the keys to a model.Config and loads the tensors.

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

	"clm/safetensors"
)

// Files of a model folder.
const (
	ConfigFile        = "config.json"
	WeightsFile       = "model.safetensors"
	WeightsIndexFile  = "model.safetensors.index.json"
	TokenizerFile     = "tokenizer.json"
	pytorchWeights    = "pytorch_model.bin"
	vocabFile         = "vocab.json"
	mergesFile        = "merges.txt"
	runCheckpointMark = "state.json" // a clm checkpoint folder's
)

// Folder is a Hugging Face model folder that maps onto a clm model.
type Folder struct {
	// Dir is the folder.
	Dir string
	// Format is what config.json says the checkpoint is.
	Format Format
	// Keys are the model keys for model.PresetWith(Preset, Keys);
	// context_length is n_ctx, else n_positions, unless config.json says
	// otherwise.
	Keys ModelKeys
	// Preset is clm_preset of a clm export, else "default".
	Preset string
	// Tokenizer is the folder's tokenizer.json (the one the model was
	// trained with), else its GPT-2 files as "vocab.json:merges.txt".
	Tokenizer string
	// weights are the safetensors files, in order.
	weights []string
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
	keys, format, preset, err := ReadConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	f := &Folder{Dir: dir, Format: format, Keys: keys, Preset: preset}
	if f.weights, err = weightFiles(dir); err != nil {
		return nil, err
	}
	f.Tokenizer = filepath.Join(dir, TokenizerFile)
	vocab, merges := filepath.Join(dir, vocabFile), filepath.Join(dir, mergesFile)
	if !exists(f.Tokenizer) && exists(vocab) && exists(merges) {
		f.Tokenizer = vocab + ":" + merges // GPT-2's original files (see bpe.Load)
	} else if !exists(f.Tokenizer) {
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

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

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
	for _, k := range sortedNames(idx.WeightMap) {
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

// Tensors reads the folder's tensors under clm's names for the model of
// resolved (every model key, as model.Config.JSON writes them): a plain
// GPT-2's through FromGPT2 (c_attn split into qk_attn and v_attn, the
// block gains added with their config values), the other formats' names
// as they are; names get the "transformer." prefix where they lack it,
// and the attention-mask buffers of older checkpoints are dropped.
// lm_head.weight is accepted only as the tied copy of wte. Whether the
// tensors are exactly the model's is the loader's check. The tensors'
// bytes may lie in the mapped weight files: use them before release, which
// unmaps the files (call it also after an error).
func (f *Folder) Tensors(resolved ModelKeys) (tensors []safetensors.Tensor, release func(), err error) {
	have, release, err := f.readAll()
	if err != nil {
		return nil, release, err
	}
	if err := f.checkHead(have); err != nil {
		return nil, release, err
	}
	for _, name := range sortedNames(have) {
		tensors = append(tensors, have[name])
	}
	if f.Format == FormatGPT2 {
		if tensors, err = FromGPT2(tensors, resolved); err != nil {
			return nil, release, fmt.Errorf("%s: %w", f.Dir, err)
		}
	}
	return tensors, release, nil
}

// checkHead accepts lm_head.weight only as a copy of wte (clm ties them).
func (f *Folder) checkHead(have map[string]safetensors.Tensor) error {
	head, ok := have["lm_head.weight"]
	delete(have, "lm_head.weight")
	wte := have["transformer.wte.weight"]
	if ok && (head.DType != wte.DType || !slices.Equal(head.Shape, wte.Shape) || !bytes.Equal(head.Data, wte.Data)) {
		return fmt.Errorf("%s: lm_head.weight differs from transformer.wte.weight: clm ties the output head to the token embedding (tie_word_embeddings = true)", f.Dir)
	}
	return nil
}

// attnBuffer is the causal-mask buffer of older GPT-2 checkpoints.
var attnBuffer = regexp.MustCompile(`^transformer\.h\.\d+\.attn\.(bias|masked_bias)$`)

// readAll reads every tensor of the weight files (their bytes in the
// mapped files until closeAll), named with the "transformer." prefix (but
// lm_head.weight), without the mask buffers.
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
			if t.Name != "lm_head.weight" && !strings.HasPrefix(t.Name, "transformer.") {
				t.Name = "transformer." + t.Name
			}
			if attnBuffer.MatchString(t.Name) {
				continue
			}
			if _, dup := have[t.Name]; dup {
				return nil, closeAll, fmt.Errorf("%s: %s is in the weights twice", path, t.Name)
			}
			have[t.Name] = t
		}
	}
	return have, closeAll, nil
}
