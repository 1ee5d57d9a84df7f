package train

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"clm/data"
	"clm/hf"
	"clm/model"
	"clm/safetensors"
	"clm/torch"
)

// A Hugging Face model (a folder with config.json, or "hub:org/name[@rev]")
// is opened wherever a run is read (OpenTrained) and as a warm start
// (train.init_from), through package hf.

// IsHF reports whether path names a Hugging Face model: "hub:org/name[@rev]"
// or a model folder (config.json, not a clm checkpoint).
func IsHF(path string) bool { return hf.IsHub(path) || hf.IsFolder(path) }

// hfModel is a Hugging Face model folder with its config resolved.
type hfModel struct {
	*hf.Folder
	// Config is the model: the folder's keys over its preset, validated.
	Config model.Config
}

// openHF resolves a hub: spec through the Hub client and its cache (the
// same environment as huggingface_hub: HF_ENDPOINT, HF_HOME, HF_TOKEN,
// HF_HUB_OFFLINE) and opens the folder; pinned is spec with the commit it
// resolved to, or the folder.
func openHF(ctx context.Context, spec string, log io.Writer) (h *hfModel, pinned string, err error) {
	dir, pinned := spec, spec
	if hf.IsHub(spec) {
		if dir, pinned, err = hf.Download(ctx, (data.Options{Log: log}).HubClient(), spec); err != nil {
			return nil, "", err
		}
	}
	f, err := hf.Open(dir)
	if err != nil {
		return nil, "", err
	}
	cfg, err := model.PresetWith(f.Preset, f.Keys)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", filepath.Join(dir, hf.ConfigFile), err)
	}
	tok, err := data.LoadTokenizer(ctx, f.Tokenizer, log)
	if err != nil {
		return nil, "", err
	}
	if n := tok.VocabSize(); n > cfg.VocabSize {
		return nil, "", fmt.Errorf("%s: its tokenizer has %d tokens, the model's vocab_size is %d", dir, n, cfg.VocabSize)
	}
	return &hfModel{Folder: f, Config: cfg}, pinned, nil
}

// hfExperiment is the experiment of a model folder, which has none: the
// default experiment with the folder's model and its tokenizer. Its data
// source is the default's; the commands that evaluate ask for one.
func hfExperiment(f *hfModel, name string) *Experiment {
	e := Defaults()
	e.Name = name
	e.Model = f.Config.Clone()
	e.ModelOverrides = map[string]any{"vocab_size": f.Config.VocabSize}
	e.Data.Tokenizer = f.Tokenizer
	return &e
}

// openTrainedHF is OpenTrained for a Hugging Face model.
func openTrainedHF(spec, device string) (*Trained, error) {
	f, pinned, err := openHF(context.Background(), spec, os.Stderr)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(f.Dir)
	if hf.IsHub(spec) {
		name = strings.ReplaceAll(strings.TrimPrefix(strings.SplitN(spec, "@", 2)[0], hf.HubPrefix), "/", "--")
	}
	exp := hfExperiment(f, name)
	dev, err := DeviceSetting(device).Resolve()
	if err != nil {
		return nil, err
	}
	m, err := model.New(exp.Model, model.Options{Device: dev, FusedKernels: exp.Train.FusedKernels})
	if err != nil {
		return nil, err
	}
	if _, err := loadHF(m, f); err != nil {
		m.Close()
		return nil, err
	}
	return &Trained{Model: m, Exp: exp, Checkpoint: pinned, RunDir: f.Dir, hf: f}, nil
}

// loadHF loads the folder's weights into m (built from h.Config) and
// returns the frozen biases it gave non-zero values (a GPT-2's trained
// biases where clm's blocks train none: they keep those values, and
// training leaves them). The gains and frozen zero biases of clm's blocks
// that a checkpoint lacks keep the values m's config gives them; any other
// difference from the model is an error that names the tensor.
func loadHF(m *model.Model, h *hfModel) (frozen []string, err error) {
	raw, err := h.Config.JSON()
	if err != nil {
		return nil, err
	}
	keys, err := hf.ParseModelKeys(raw)
	if err != nil {
		return nil, err
	}
	tensors, release, err := h.Tensors(keys)
	defer release()
	if err != nil {
		return nil, err
	}
	torch.ManualSeed(0) // the initialisation is overwritten but for the fixed gains
	if err := m.Init(); err != nil {
		return nil, err
	}
	s := torch.NewScope()
	defer s.Close()
	named := make([]torch.Named, 0, len(tensors))
	have := map[string]bool{}
	for _, t := range tensors {
		x, err := hfTensor(t, m.Options().Device)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", h.Dir, t.Name, err)
		}
		named = append(named, torch.Named{Name: t.Name, Tensor: x})
		have[t.Name] = !allZero(t.Data)
	}
	for _, p := range m.Params().All() {
		nonZero, ok := have[p.Name]
		fixed := p.Role == model.RoleGain || (p.Role == model.RoleBias && !p.Trainable)
		switch {
		case !ok && fixed:
			named = append(named, torch.Named{Name: p.Name, Tensor: p.T})
		case ok && nonZero && p.Role == model.RoleBias && !p.Trainable:
			frozen = append(frozen, p.Name)
		}
	}
	if err := m.LoadState(named); err != nil {
		return nil, fmt.Errorf("%s: %w", h.Dir, err)
	}
	return frozen, nil
}

// hfTensor is a safetensors tensor on dev.
func hfTensor(t safetensors.Tensor, dev torch.Device) (*torch.Tensor, error) {
	dt, err := torch.DTypeFromSafetensors(t.DType)
	if err != nil {
		return nil, err
	}
	var x *torch.Tensor
	err = torch.Try(func() { x = torch.FromBytes(t.Data, dt, t.Shape, dev) })
	return x, err
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Experiment is the trained model's experiment with `-set` overrides: a
// run's config.toml, or a model folder's default experiment.
func (t *Trained) Experiment(sets map[string]any) (*Experiment, error) {
	if t.hf == nil {
		return Load(t.Config(), sets)
	}
	src, err := t.Exp.TOML()
	if err != nil {
		return nil, err
	}
	return Parse(filepath.Join(t.hf.Dir, hf.ConfigFile), src, t.Exp.Name, sets)
}

// FromHF reports whether the model is a Hugging Face model rather than a
// clm run's checkpoint: it has no run folder, no validation set of its own
// and nothing may be written beside it.
func (t *Trained) FromHF() bool { return t.hf != nil }

// resolveHFInit opens the Hugging Face model of train.init_from (pinning
// a hub: spec to its commit, as config.toml records it) and makes its
// tokenizer and vocabulary the run's where the experiment leaves them to
// be derived.
func (r *Run) resolveHFInit() error {
	f, pinned, err := openHF(context.Background(), r.Exp.Train.InitFrom, r.log)
	if err != nil {
		return fmt.Errorf("train.init_from: %w", err)
	}
	r.initHF = f
	r.Exp.Train.InitFrom = pinned
	if r.Exp.Data.Tokenizer == "" {
		r.Exp.Data.Tokenizer = f.Tokenizer
		if hf.IsHub(pinned) {
			r.Exp.Data.Tokenizer = pinned // the same tokenizer.json, from the Hub cache
		}
	}
	if _, set := r.Exp.ModelOverrides["vocab_size"]; !set {
		r.Exp.Model.VocabSize = f.Config.VocabSize
		r.Exp.ModelOverrides["vocab_size"] = f.Config.VocabSize
	}
	return nil
}

// checkHFInit refuses a warm start from a Hugging Face model of another
// architecture than the experiment's (the training length and the
// dropouts are the run's choice), or with another tokenizer.
func (r *Run) checkHFInit() error {
	from := r.Exp.Train.InitFrom
	cfg := r.initHF.Config.Clone()
	cfg.ContextLength = r.Exp.Model.ContextLength
	cfg.ResidPdrop, cfg.AttnPdrop, cfg.EmbdPdrop = r.Exp.Model.ResidPdrop, r.Exp.Model.AttnPdrop, r.Exp.Model.EmbdPdrop
	cfg.TrainableBiases = r.Exp.Model.TrainableBiases // which parameters train is the run's choice
	if diff := configDiff(cfg, r.Exp.Model); diff != "" {
		return fmt.Errorf("train.init_from: %s is another model: %s", from, diff)
	}
	tok, err := data.LoadTokenizer(context.Background(), r.initHF.Tokenizer, r.log)
	if err != nil {
		return fmt.Errorf("train.init_from: %w", err)
	}
	a, errA := tok.MarshalJSON()
	b, errB := r.ds.Tokenizer.MarshalJSON()
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return fmt.Errorf("train.init_from: data.tokenizer %s is not the tokenizer of %s (%s); leave data.tokenizer unset to train with the model's own",
			r.Exp.Data.Tokenizer, from, r.initHF.Tokenizer)
	}
	return nil
}

// warmStartHF loads the Hugging Face model's weights into the new run's
// model.
func (r *Run) warmStartHF() error {
	frozen, err := loadHF(r.Model, r.initHF)
	if err != nil {
		return fmt.Errorf("train.init_from: %w", err)
	}
	fmt.Fprintf(r.log, "warm start: the weights of %s (Hugging Face, %s); optimizer, schedule and data order start afresh\n", r.Exp.Train.InitFrom, r.initHF.Format)
	if len(frozen) > 0 {
		fmt.Fprintf(r.log, "warm start: %d trained biases (e.g. %s) stay frozen at their values, as the original's blocks keep those of v_attn, attn.c_proj and the MLP; model.trainable_biases = true trains them, as GPT-2 does\n", len(frozen), frozen[0])
	}
	return nil
}

// sameHubInit reports whether a run's train.init_from is the hub: model
// asked (at any revision), pinned to its commit when the run started.
func sameHubInit(asked, run string) bool {
	id, _, _ := strings.Cut(asked, "@")
	return hf.IsHub(asked) && strings.HasPrefix(run, id+"@")
}
