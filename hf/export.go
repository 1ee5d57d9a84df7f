package hf

import (
	"bytes"
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"clm/internal/version"
	"clm/safetensors"
)

// remote holds the remote code of a clm export, written into every folder
// whose model GPT-2 cannot compute.
//
//go:embed remote/configuration_clm.py remote/modeling_clm.py
var remote embed.FS

// Source is what an export reads from a run.
type Source struct {
	// Weights is the checkpoint's model.safetensors: clm's tensor names,
	// the model config (model.Config.JSON) in its "config" metadata.
	Weights string
	// Names are the tensor names that config declares (model.Config.Params,
	// buffers included); the file must hold exactly these.
	Names []string
	// Tokenizer is the run's tokenizer as a tokenizer.json.
	Tokenizer []byte
	// EOS is <|endoftext|>'s id in the tokenizer (also bos and pad, as in
	// GPT-2 and the original's collator), -1 when it has none.
	EOS int
	// Card is what the model card says of the run.
	Card Card
}

// Card is the model card's account of the run.
type Card struct {
	// Experiment is the run's name, Preset its model preset, Source the
	// preset's origin in the papers.
	Experiment, Preset, Source string
	// Step and Tokens are the checkpoint's optimizer steps and training
	// tokens.
	Step   int
	Tokens int64
	// EvalLoss is the last eval_loss the run logged up to Step, at
	// EvalStep; NaN when it logged none.
	EvalLoss float64
	EvalStep int64
	// Params is the parameter count (tied head once).
	Params int64
}

// Result says what Export wrote.
type Result struct {
	// Plain is true for a GPT2LMHeadModel folder (no remote code); Why says
	// otherwise which key needs the remote code.
	Plain bool
	Why   string
	// Files are the names of the files in the folder.
	Files []string
}

// Export writes the Hugging Face model folder of src into dir: config.json,
// model.safetensors (fp32, {"format": "pt"}), generation_config.json,
// tokenizer.json, tokenizer_config.json, README.md and, unless the model is
// a plain GPT-2 (PlainGPT2), configuration_clm.py and modeling_clm.py. The
// folder is written under a temporary name beside dir and renamed, so dir
// is either as it was or complete. An existing dir that is not empty is
// refused unless force, which replaces it.
func Export(src Source, dir string, force bool) (Result, error) {
	if err := checkTarget(dir, force); err != nil {
		return Result{}, err
	}
	files, res, err := folderFiles(src)
	if err != nil {
		return Result{}, err
	}
	parent, base := filepath.Split(filepath.Clean(dir))
	if parent == "" {
		parent = "."
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".export-*")
	if err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	defer os.RemoveAll(tmp) // the new folder once renamed away; the old one after an exchange
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := files[name](filepath.Join(tmp, name)); err != nil {
			return Result{}, fmt.Errorf("export: %s: %w", name, err)
		}
		res.Files = append(res.Files, name)
	}
	syncDir(tmp) // the files' names, before the folder takes dir's
	if err := install(tmp, filepath.Clean(dir)); err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	return res, nil
}

// checkTarget refuses a dir that is a file, or a folder that is not empty
// (unless force).
func checkTarget(dir string, force bool) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("export: %w", err)
	case !st.IsDir():
		return fmt.Errorf("export: %s exists and is not a folder", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if len(entries) > 0 && !force {
		return fmt.Errorf("export: %s is not empty (-force replaces it)", dir)
	}
	return nil
}

// install puts the finished folder tmp at dir: a rename when dir does not
// exist, else an atomic exchange (tmp then holds the old folder).
func install(tmp, dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
	} else if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("replace %s: %w", dir, err)
	}
	syncDir(filepath.Dir(dir))
	return nil
}

// syncDir makes the entries of a folder durable (not every system can sync
// a folder).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// folderFiles returns a writer for each file of the folder.
func folderFiles(src Source) (map[string]func(string) error, Result, error) {
	f, err := safetensors.Open(src.Weights)
	if err != nil {
		return nil, Result{}, fmt.Errorf("export: %w", err)
	}
	m, err := ParseModelKeys([]byte(f.Metadata()["config"]))
	if err != nil {
		f.Close()
		return nil, Result{}, fmt.Errorf("export: %s: %w", src.Weights, err)
	}
	f.Close()
	plain, why := PlainGPT2(m)
	meta := Meta{BOS: src.EOS, EOS: src.EOS, Pad: src.EOS, Preset: src.Card.Preset, Version: clmVersion()}
	cfg, err := ConfigJSON(m, meta)
	if err != nil {
		return nil, Result{}, fmt.Errorf("export: %w", err)
	}
	gen, tokCfg := generationConfig(meta, plain), tokenizerConfig(src, m)
	files := map[string]func(string) error{
		"config.json":            writeBytes(cfg),
		"generation_config.json": writeBytes(gen),
		"tokenizer.json":         writeBytes(src.Tokenizer),
		"tokenizer_config.json":  writeBytes(tokCfg),
		"README.md":              writeBytes([]byte(modelCard(src.Card, m, plain, why))),
		"model.safetensors":      func(path string) error { return writeWeights(path, src, m, plain) },
	}
	if !plain {
		for _, name := range []string{ConfigModule, ModelingModule} {
			b, err := remote.ReadFile("remote/" + name)
			if err != nil {
				return nil, Result{}, err
			}
			files[name] = writeBytes(b)
		}
	}
	return files, Result{Plain: plain, Why: why}, nil
}

func clmVersion() string {
	v := version.Get()
	return v.Release + " (commit " + v.Short() + ")"
}

// writeBytes writes b to a file and syncs it.
func writeBytes(b []byte) func(string) error {
	return func(path string) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(b)
		if e := f.Sync(); err == nil {
			err = e
		}
		if e := f.Close(); err == nil {
			err = e
		}
		return err
	}
}

// writeWeights writes the checkpoint's tensors in fp32 under the names
// transformers expects: clm's for the remote code, GPT-2's for a plain
// model.
func writeWeights(path string, src Source, m ModelKeys, plain bool) error {
	f, err := safetensors.Open(src.Weights)
	if err != nil {
		return err
	}
	defer f.Close()
	if have, want := f.Names(), slices.Sorted(slices.Values(src.Names)); !slices.Equal(have, want) {
		return fmt.Errorf("%s holds %d tensors, not the %d its config declares", src.Weights, len(have), len(want))
	}
	var tensors []safetensors.Tensor
	for _, name := range src.Names {
		t, err := f.Tensor(name)
		if err == nil {
			t, err = toF32(t)
		}
		if err != nil {
			return err
		}
		tensors = append(tensors, t)
	}
	if plain {
		if tensors, err = ToGPT2(tensors, m); err != nil {
			return err
		}
	}
	return safetensors.Write(path, tensors, map[string]string{"format": "pt"})
}

// toF32 converts an F64 or BF16 tensor to F32 (F32 passes as it is).
func toF32(t safetensors.Tensor) (safetensors.Tensor, error) {
	switch t.DType {
	case safetensors.F32:
		return t, nil
	case safetensors.F64:
		v, err := safetensors.FromBytes[float64](t.Data)
		if err != nil {
			return t, err
		}
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return safetensors.NewTensor(t.Name, t.Shape, out), nil
	case safetensors.BF16:
		out := make([]float32, len(t.Data)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[2*i:])) << 16)
		}
		return safetensors.NewTensor(t.Name, t.Shape, out), nil
	}
	return t, fmt.Errorf("tensor %s has dtype %s (want F32, F64 or BF16)", t.Name, t.DType)
}

// generationConfig is generation_config.json: the special tokens, and no
// cache for the remote code (it recomputes the sequence at every step).
func generationConfig(meta Meta, plain bool) []byte {
	tok := func(id int) any {
		if id < 0 {
			return nil
		}
		return id
	}
	return indentJSON(map[string]any{
		"bos_token_id": tok(meta.BOS), "eos_token_id": tok(meta.EOS), "pad_token_id": tok(meta.Pad),
		"use_cache": plain,
	})
}

// tokenizerConfig is tokenizer_config.json: the fast tokenizer of
// tokenizer.json as it is (no added bos, no cleanup of spaces), with
// <|endoftext|> as bos, eos and pad.
func tokenizerConfig(src Source, m ModelKeys) []byte {
	c := map[string]any{
		"tokenizer_class":              "PreTrainedTokenizerFast",
		"model_max_length":             m["n_positions"],
		"clean_up_tokenization_spaces": false,
		"add_bos_token":                false,
		"add_prefix_space":             false,
	}
	if src.EOS >= 0 {
		c["bos_token"], c["eos_token"], c["pad_token"] = "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"
	}
	return indentJSON(c)
}

// indentJSON is v as indented JSON, with <, > and & as they are (v holds
// only JSON values).
func indentJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		panic(err) // unreachable: maps of JSON values
	}
	return b.Bytes()
}
