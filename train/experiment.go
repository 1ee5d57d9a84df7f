package train

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"clm/hub"
	"clm/internal/errjoin"
	"clm/model"
	"clm/optim"
	"clm/torch"
)

// Experiment is one TOML experiment file: the model variant, the training
// run, the data and what to report. Load resolves it.
type Experiment struct {
	// Name labels the run (default: the file name without extension).
	Name string `toml:"name"`
	// Model is the resolved model configuration (preset plus overrides).
	Model model.Config `toml:"-"`
	// Preset is the model preset the overrides apply to.
	Preset string `toml:"-"`
	// ModelOverrides are the [model] keys other than preset.
	ModelOverrides map[string]any `toml:"-"`
	Train          Options        `toml:"train"`
	Data           DataOptions    `toml:"data"`
	Report         ReportOptions  `toml:"report"`
}

// Options are the [train] keys: the HF Trainer settings of the original.
type Options struct {
	MicroBatch   int `toml:"micro_batch"`  // sequences per forward (32)
	EvalBatch    int `toml:"eval_batch"`   // sequences per eval forward (32)
	Accumulation int `toml:"accumulation"` // micro-batches per optimizer step (4)
	// FitMicroBatch, on a GPU, regroups the step's micro_batch × accumulation
	// sequences into the largest forwards that fit in memory; the sequences
	// and the loss of each step stay the same (true).
	FitMicroBatch bool                `toml:"fit_micro_batch"`
	Epochs        float64             `toml:"epochs"`        // passes over the training chunks (1), unless MaxSteps
	MaxSteps      int                 `toml:"max_steps"`     // optimizer steps; 0: from Epochs
	LR            float64             `toml:"lr"`            // peak learning rate (1e-3)
	WeightDecay   float64             `toml:"weight_decay"`  // AdamW decoupled decay (0.1)
	WarmupRatio   float64             `toml:"warmup_ratio"`  // warmup = ceil(ratio·total) steps (0.05)
	Schedule      Schedule            `toml:"schedule"`      // polynomial | linear | cosine | constant | constant_with_warmup
	Power         float64             `toml:"power"`         // polynomial power (1)
	LREnd         float64             `toml:"lr_end"`        // polynomial end lr (1e-7)
	Optimizer     Optimizer           `toml:"optimizer"`     // adamw_hf | adamw_torch
	Beta1         float64             `toml:"beta1"`         // 0.9
	Beta2         float64             `toml:"beta2"`         // 0.999
	Eps           float64             `toml:"eps"`           // 1e-8
	MaxGradNorm   float64             `toml:"max_grad_norm"` // global clip (1); 0 disables
	Precision     Precision           `toml:"precision"`     // auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 (dynamic loss scaling)
	EvalEvery     int                 `toml:"eval_every"`    // steps between evaluations (500)
	EvalBatches   int                 `toml:"eval_batches"`  // cap on eval batches; 0: the whole valid set
	LogEvery      int                 `toml:"log_every"`     // steps between log lines (500)
	SaveEvery     int                 `toml:"save_every"`    // steps between checkpoints (10000)
	Seed          int64               `toml:"seed"`          // seed of init, data order and dropout (0)
	Device        string              `toml:"device"`        // auto | cpu | cuda | cuda:N
	Threads       int                 `toml:"threads"`       // CPU threads of libtorch; 0: libtorch's default
	Attention     model.AttentionImpl `toml:"attention"`     // auto | fused | materialised
	// CheckpointActivations is "none" (keep every block's activations for
	// backward) or "block" (keep each block's input and recompute its
	// activations in backward, as torch.utils.checkpoint per block: a
	// fraction of the memory for about one more forward; losses and
	// gradients are bit-identical).
	CheckpointActivations model.Checkpointing `toml:"checkpoint_activations"`
	// FusedKernels computes the MLP activation, RMSNorm, the residual
	// combinations and the shaped-attention epilogue each in one fused
	// kernel (true); false uses the composite ops, for A/B checks.
	FusedKernels bool `toml:"fused_kernels"`
	// CUDAGraphs, on a GPU, captures the step (forwards, backwards,
	// clipping, AdamW) in a CUDA graph after 3 eager steps and replays it
	// for every later step (false). It needs AdamW, deferred NaN checks,
	// one process and checkpoint_activations = "none".
	CUDAGraphs bool      `toml:"cuda_graphs"`
	OnNaN      NaNPolicy `toml:"on_nan"` // stop | skip
	// NaNCheckEvery is the number of steps between host synchronisations
	// that check the loss and gradient norm; 0: every step on the CPU, every
	// log_every steps on a GPU (fp16 and on_nan = skip always check every
	// step).
	NaNCheckEvery int `toml:"nan_check_every"`
	// DistTimeout is how long a data-parallel collective may wait for the
	// other ranks, in seconds (a rank that died makes the others stop).
	DistTimeout float64 `toml:"dist_timeout"`
	// InitFrom warm-starts a new run from the weights of another run's
	// checkpoint: a run folder (its latest checkpoint, resolved when the run
	// starts and recorded so) or a checkpoint folder; or of a Hugging Face
	// GPT-2, a model folder or "hub:org/name[@revision]" (pinned to its
	// commit when the run starts). Only the weights are
	// taken: the optimizer, schedule, data order and step start afresh, and
	// the model must be the same architecture ("": initialise).
	InitFrom string `toml:"init_from"`
	// Optim are the [train.optim] keys of SOAP and Muon.
	Optim OptimOptions `toml:"optim"`
}

// OptimOptions are the [train.optim] keys: SOAP's and Muon's own settings
// (both take lr, weight_decay, beta1, beta2 and eps from [train]; Muon's
// AdamW part too). Their JSON is what scripts/reference/train.py's --optim
// takes.
type OptimOptions struct {
	// SOAP (Vyas et al. 2024), as pytorch_optimizer.SOAP.
	PreconditionFrequency int     `toml:"precondition_frequency" json:"precondition_frequency"` // steps between eigenbasis refreshes (10)
	MaxPreconditionDim    int     `toml:"max_precondition_dim" json:"max_precondition_dim"`     // larger dimensions keep the identity (10000)
	ShampooBeta           float64 `toml:"shampoo_beta" json:"shampoo_beta"`                     // decay of the preconditioner statistics; −1: beta2
	Precondition1D        bool    `toml:"precondition_1d" json:"precondition_1d"`               // precondition 1-D parameters too (false)
	NormalizeGradient     bool    `toml:"normalize_gradient" json:"normalize_gradient"`         // divide each update by its RMS (false)
	// Muon, as torch.optim.Muon, for the 2-D hidden matrices (AdamW,
	// torch's, for embeddings, gains, norms and biases).
	Momentum float64 `toml:"momentum" json:"momentum"`   // 0.95
	Nesterov bool    `toml:"nesterov" json:"nesterov"`   // true
	NSSteps  int     `toml:"ns_steps" json:"ns_steps"`   // Newton–Schulz iterations (5)
	AdjustLR string  `toml:"adjust_lr" json:"adjust_lr"` // original | match_rms_adamw | spectral_unclamped
}

// DataOptions are the [data] keys.
type DataOptions struct {
	Source     string   `toml:"source"`     // stdlib | dir | hf | hub
	Path       string   `toml:"path"`       // directory or files (dir, hf)
	Extensions []string `toml:"extensions"` // file filter (dir, stdlib)
	Column     string   `toml:"column"`     // text column (hf, hub)
	ValidPath  string   `toml:"valid_path"` // separate validation files; empty: hash split
	// Dataset and ValidDataset are Hub dataset repositories (source "hub"),
	// read at Revision (ValidRevision, default Revision) and split Split
	// (ValidSplit) as datasets.load_dataset reads them; without a
	// ValidDataset, validation documents are a hash split of Dataset.
	Dataset       string `toml:"dataset"`
	ValidDataset  string `toml:"valid_dataset"`
	Revision      string `toml:"revision"`       // branch, tag or commit ("main")
	ValidRevision string `toml:"valid_revision"` // default: revision
	Split         string `toml:"split"`          // "train"
	ValidSplit    string `toml:"valid_split"`    // "validation"
	// Tokenizer is a tokenizer.json (or directory, or vocab.json:merges.txt),
	// or "hub:org/name[@revision]" on the Hub; empty: train one on the
	// corpus (cached).
	Tokenizer      string  `toml:"tokenizer"`
	TokenizerVocab int     `toml:"tokenizer_vocab"` // vocabulary of a trained tokenizer (52000)
	NumTokenMult   float64 `toml:"num_token_mult"`  // num_token_mult × 100000 training documents
	ValidDocs      int     `toml:"valid_docs"`      // validation documents (2000)
	ValidFraction  float64 `toml:"valid_fraction"`  // held-out share without a validation corpus (0.05)
	Seed           int64   `toml:"seed"`            // document shuffle seed (0, as the original's shuffle(seed=0))
}

// ReportOptions are the [report] keys: the statistics logged during training.
type ReportOptions struct {
	Every    int  `toml:"every"`    // steps between statistics (100), plus the first and last step; 0: never
	Outliers bool `toml:"outliers"` // kurtosis, max/median, correlations per layer
	Entropy  bool `toml:"entropy"`  // attention entropy per layer
	Gains    bool `toml:"gains"`    // every trained gain
}

// Defaults returns the original's settings (HF Trainer as configured by the
// original's train.yaml).
func Defaults() Experiment {
	return Experiment{
		Preset: "default",
		Train: Options{
			MicroBatch: 32, EvalBatch: 32, Accumulation: 4, FitMicroBatch: true, Epochs: 1, LR: 1e-3, WeightDecay: 0.1,
			WarmupRatio: 0.05, Schedule: "polynomial", Power: 1, LREnd: 1e-7, Optimizer: "adamw_hf",
			Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1, Precision: "auto",
			EvalEvery: 500, LogEvery: 500, SaveEvery: 10000, Device: "auto", Attention: model.AttentionAuto, OnNaN: "stop",
			CheckpointActivations: model.CheckpointNone, FusedKernels: true,
			DistTimeout: 1800,
			Optim: OptimOptions{PreconditionFrequency: 10, MaxPreconditionDim: 10000, ShampooBeta: -1,
				Momentum: 0.95, Nesterov: true, NSSteps: 5, AdjustLR: "original"},
		},
		Data: DataOptions{Source: "stdlib", TokenizerVocab: 52000, NumTokenMult: 2, ValidDocs: 2000,
			ValidFraction: 0.05, Column: "content", Revision: "main", Split: "train", ValidSplit: "validation"},
		Report: ReportOptions{Every: 100, Outliers: true, Entropy: true, Gains: true},
	}
}

// fileDoc is the TOML layout; [model] is decoded separately (preset plus any
// model key).
type fileDoc struct {
	Name   string         `toml:"name"`
	Model  map[string]any `toml:"model"`
	Train  Options        `toml:"train"`
	Data   DataOptions    `toml:"data"`
	Report ReportOptions  `toml:"report"`
}

// Load reads an experiment file, applies `-set section.key=value`
// overrides (values as TOML) and resolves the model. Errors name the file
// and, where it has one, the line; unknown keys and wrong types are errors.
func Load(path string, sets map[string]any) (*Experiment, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return Parse(path, src, name, sets)
}

// Parse is Load for file contents; file names the source in errors.
func Parse(file string, src []byte, name string, sets map[string]any) (*Experiment, error) {
	e := Defaults()
	doc := fileDoc{Name: name, Train: e.Train, Data: e.Data, Report: e.Report}
	md, err := toml.Decode(string(src), &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", file, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var bad []string
		seen := map[string]bool{}
		for _, k := range und {
			ks := k.String()
			if strings.HasPrefix(ks, "model.") {
				continue // model keys are checked against model.Config below
			}
			if parent := ks[:max(0, strings.LastIndex(ks, "."))]; seen[parent] {
				seen[ks] = true
				continue // inside an unknown table: the table is the mistake
			}
			seen[ks] = true
			bad = append(bad, fmt.Sprintf("%s:%d: unknown key %q%s", file, keyLine(src, k), ks, didYouMean(ks)))
		}
		if len(bad) > 0 {
			return nil, errors.New(strings.Join(bad, "; "))
		}
	}
	if err := applySets(&doc, sets); err != nil {
		return nil, err // it names the -set flag
	}
	e.Name, e.Train, e.Data, e.Report = doc.Name, doc.Train, doc.Data, doc.Report
	e.ModelOverrides = map[string]any{}
	for k, v := range doc.Model {
		if k == "preset" {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%s:%d: model.preset must be a string", file, keyLine(src, toml.Key{"model", "preset"}))
			}
			e.Preset = s
			continue
		}
		e.ModelOverrides[k] = v
	}
	cfg, err := model.PresetWith(e.Preset, e.ModelOverrides)
	if err != nil {
		// Point at the first offending key: the -set flag that gave it, else
		// its line in the file.
		if m := regexp.MustCompile(`model\.([a-z_0-9]+)`).FindStringSubmatch(err.Error()); m != nil {
			hint := ""
			if strings.Contains(err.Error(), "unknown key") {
				hint = didYouMean("model." + m[1])
			}
			if v, set := sets["model."+m[1]]; set {
				return nil, fmt.Errorf("-set model.%s=%v: %v%s", m[1], v, err, hint)
			}
			if line := keyLine(src, toml.Key{"model", m[1]}); line > 0 {
				return nil, fmt.Errorf("%s:%d: %v%s", file, line, err, hint)
			}
			return nil, fmt.Errorf("%s: %v%s", file, err, hint)
		}
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	e.Model = cfg
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &e, nil
}

// applySets applies overrides keyed "section.key" ("model.n_layer",
// "train.lr") or "name".
func applySets(doc *fileDoc, sets map[string]any) error {
	if len(sets) == 0 {
		return nil
	}
	keys := make([]string, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := sets[k]
		section, key, ok := strings.Cut(k, ".")
		if !ok && k == "name" {
			s, isStr := v.(string)
			if !isStr {
				return fmt.Errorf("-set name: want a string")
			}
			doc.Name = s
			continue
		}
		if !ok {
			return fmt.Errorf("-set %s: want section.key (model., train., data., report.)%s", k, didYouMean(k))
		}
		switch section {
		case "model":
			if doc.Model == nil {
				doc.Model = map[string]any{}
			}
			doc.Model[key] = v
		case "train", "data", "report":
			if err := setField(doc, section, key, v); err != nil {
				hint := ""
				if strings.Contains(err.Error(), "unknown key") {
					hint = didYouMean(k)
				}
				return fmt.Errorf("-set %s: %w%s", k, err, hint)
			}
		default:
			return fmt.Errorf("-set %s: unknown section %q (model, train, data, report)%s", k, section, didYouMean(k))
		}
	}
	return nil
}

// setField re-decodes one overridden key through TOML so that it gets the
// same type checks as the file.
func setField(doc *fileDoc, section, key string, v any) error {
	// "optim.momentum" is the key momentum of the table [train.optim].
	var inner any = v
	parts := strings.Split(key, ".")
	for i := len(parts) - 1; i >= 0; i-- {
		inner = map[string]any{parts[i]: inner}
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{section: inner}); err != nil {
		return err
	}
	md, err := toml.Decode(buf.String(), doc)
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return errors.New(pe.Message) // its line is that of the re-encoded flag, not the user's
	}
	if err != nil {
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("unknown key %q", und[0].String())
	}
	return nil
}

// keyLine finds the line of key in src (its table header, then the key), or 0.
func keyLine(src []byte, key toml.Key) int {
	lines := strings.Split(string(src), "\n")
	table := ""
	last := key[len(key)-1]
	want := strings.Join(key[:len(key)-1], ".")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			table = strings.Trim(t, "[] ")
			if table == strings.Join(key, ".") {
				return i + 1 // the key is a table
			}
			continue
		}
		k, _, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		full := k
		if table != "" {
			full = table + "." + k
		}
		if full == strings.Join(key, ".") || (table == want && k == last) {
			return i + 1
		}
	}
	return 0
}

// Validate checks the [train], [data] and [report] settings.
func (e *Experiment) Validate() error {
	v := validator{}
	// The name is the default run folder, runs/<name>: an empty one would
	// train into runs/ itself, among the other runs.
	if strings.TrimSpace(e.Name) == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, `/\`) {
		v.bad("name", "%q cannot name a run folder (runs/<name>): give a plain name", e.Name)
	}
	v.train(&e.Train)
	v.data(&e.Data)
	if e.Report.Every < 0 {
		v.bad("report.every", "%d must not be negative", e.Report.Every)
	}
	return errjoin.OneLine(v.errs)
}

// validator collects "key: reason" errors.
type validator struct{ errs []error }

func (v *validator) bad(key, format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
}

// finite reports whether x is a number (not NaN or ±Inf), complaining if not.
func (v *validator) finite(key string, x float64) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		v.bad(key, "%v is not a finite number", x)
		return false
	}
	return true
}

// between checks lo ≤ x ≤ hi (hiOpen: x < hi), with x finite.
func (v *validator) between(key string, x, lo, hi float64, hiOpen bool) {
	if !v.finite(key, x) {
		return
	}
	if x < lo || x > hi || (hiOpen && x == hi) {
		right := "]"
		if hiOpen {
			right = ")"
		}
		v.bad(key, "%v is outside [%v, %v%s", x, lo, hi, right)
	}
}

// count checks lo ≤ n ≤ hi for an integer setting.
func (v *validator) count(key string, n, lo, hi int) {
	if n < lo || n > hi {
		v.bad(key, "%d is outside [%d, %d]", n, lo, hi)
	}
}

// Limits that keep a mistyped size from running for hours or filling memory.
const (
	maxBatch       = 1 << 20
	maxSteps       = 1 << 40
	threadsPerCore = 4
)

func (v *validator) train(t *Options) {
	v.count("train.micro_batch", t.MicroBatch, 1, maxBatch)
	v.count("train.eval_batch", t.EvalBatch, 1, maxBatch)
	v.count("train.accumulation", t.Accumulation, 1, maxBatch)
	v.count("train.log_every", t.LogEvery, 1, maxSteps)
	v.count("train.eval_every", t.EvalEvery, 1, maxSteps)
	v.count("train.save_every", t.SaveEvery, 1, maxSteps)
	v.count("train.max_steps", t.MaxSteps, 0, maxSteps)
	v.count("train.eval_batches", t.EvalBatches, 0, maxSteps)
	v.count("train.nan_check_every", t.NaNCheckEvery, 0, maxSteps)
	if cores := runtime.NumCPU(); t.Threads < 0 || t.Threads > threadsPerCore*cores {
		v.bad("train.threads", "%d is outside [0, %d] (%d× the %d cores; 0: libtorch's default)", t.Threads, threadsPerCore*cores, threadsPerCore, cores)
	}
	if v.finite("train.epochs", t.Epochs) && !(t.Epochs > 0 && t.Epochs <= 1e6) {
		v.bad("train.epochs", "%v is outside (0, 1e6]", t.Epochs)
	}
	if v.finite("train.lr", t.LR) && !(t.LR > 0 && t.LR <= 10) {
		v.bad("train.lr", "%v is outside (0, 10]", t.LR)
	}
	v.between("train.weight_decay", t.WeightDecay, 0, 10, false)
	v.between("train.warmup_ratio", t.WarmupRatio, 0, 1, true)
	v.between("train.beta1", t.Beta1, 0, 1, true)
	v.between("train.beta2", t.Beta2, 0, 1, true)
	v.between("train.eps", t.Eps, 0, 1, false)
	v.between("train.max_grad_norm", t.MaxGradNorm, 0, math.MaxFloat64, false)
	if v.finite("train.power", t.Power) && !(t.Power > 0) {
		v.bad("train.power", "%v must be positive", t.Power)
	}
	if v.finite("train.lr_end", t.LREnd) {
		switch {
		case t.LREnd < 0:
			v.bad("train.lr_end", "%v must not be negative", t.LREnd)
		case t.Schedule == Polynomial && !math.IsNaN(t.LR) && !(t.LR > t.LREnd):
			v.bad("train.lr_end", "%v must be below lr %v for the polynomial schedule", t.LREnd, t.LR)
		}
	}
	if v.finite("train.dist_timeout", t.DistTimeout) && !(t.DistTimeout > 0) {
		v.bad("train.dist_timeout", "%v seconds must be positive", t.DistTimeout)
	}
	if _, ok := schedules[t.Schedule]; !ok {
		v.bad("train.schedule", "unknown schedule %q (want polynomial, linear, cosine, constant or constant_with_warmup)", t.Schedule)
	}
	switch t.Optimizer {
	case AdamWHF, AdamWTorch, SOAP, Muon:
	default:
		v.bad("train.optimizer", "unknown optimizer %q (want adamw_hf, adamw_torch, soap or muon)", t.Optimizer)
	}
	v.optim(&t.Optim)
	switch t.Precision {
	case PrecisionAuto, FP32, BF16, FP16:
	default:
		v.bad("train.precision", "unknown precision %q (want auto, fp32, bf16 or fp16)", t.Precision)
	}
	if t.Device != "auto" && t.Device != "" {
		if _, err := torch.ParseDevice(t.Device); err != nil {
			v.bad("train.device", "%v", err)
		}
	}
	if t.OnNaN != StopOnNaN && t.OnNaN != SkipOnNaN {
		v.bad("train.on_nan", "unknown value %q (want stop or skip)", t.OnNaN)
	}
}

// optim checks [train.optim] (whatever the optimizer, so that a switch
// of train.optimizer cannot reveal a bad key later).
func (v *validator) optim(o *OptimOptions) {
	v.count("train.optim.precondition_frequency", o.PreconditionFrequency, 1, maxSteps)
	v.count("train.optim.max_precondition_dim", o.MaxPreconditionDim, 1, 1<<20)
	if v.finite("train.optim.shampoo_beta", o.ShampooBeta) && o.ShampooBeta != -1 && !(o.ShampooBeta >= 0 && o.ShampooBeta < 1) {
		v.bad("train.optim.shampoo_beta", "%v is outside [0, 1) (−1: beta2)", o.ShampooBeta)
	}
	v.between("train.optim.momentum", o.Momentum, 0, 1, true)
	v.count("train.optim.ns_steps", o.NSSteps, 0, 99)
	switch o.AdjustLR {
	case optim.MuonAdjustOriginal, optim.MuonAdjustMatchRMSAdamW, optim.MuonAdjustSpectralUnclamped:
	default:
		v.bad("train.optim.adjust_lr", "unknown value %q (want original, match_rms_adamw or spectral_unclamped)", o.AdjustLR)
	}
}

func (v *validator) data(d *DataOptions) {
	switch d.Source {
	case "stdlib":
	case "dir", "hf":
		if d.Path == "" {
			v.bad("data.path", "source %q needs a path", d.Source)
		}
	case "hub":
		if d.Dataset == "" {
			v.bad("data.dataset", "source \"hub\" needs a dataset repository (org/name), e.g. %q", "huggingface-course/codeparrot-ds-train")
		}
		for _, kv := range [][2]string{{"data.dataset", d.Dataset}, {"data.valid_dataset", d.ValidDataset}} {
			if kv[1] != "" {
				if err := hub.Dataset(kv[1]).Validate(); err != nil {
					v.bad(kv[0], "%v", err)
				}
			}
		}
		if d.Split == "" || d.ValidSplit == "" {
			v.bad("data.split", "split and valid_split must not be empty")
		}
	default:
		v.bad("data.source", "unknown source %q (want stdlib, dir, hf or hub)", d.Source)
	}
	if id, ok := strings.CutPrefix(d.Tokenizer, "hub:"); ok {
		id, _, _ = strings.Cut(id, "@")
		if err := hub.Model(id).Validate(); err != nil {
			v.bad("data.tokenizer", "%v", err)
		}
	}
	if v.finite("data.num_token_mult", d.NumTokenMult) && !(d.NumTokenMult > 0 && d.NumTokenMult <= 1e4) {
		v.bad("data.num_token_mult", "%v is outside (0, 10000] (documents = num_token_mult × 100000)", d.NumTokenMult)
	}
	if d.Tokenizer == "" {
		v.count("data.tokenizer_vocab", d.TokenizerVocab, 257, 1<<24)
	}
	v.count("data.valid_docs", d.ValidDocs, 0, 1<<30)
	v.between("data.valid_fraction", d.ValidFraction, 0, 1, true)
	if d.Seed < 0 {
		v.bad("data.seed", "%d must not be negative (NumPy's default_rng refuses it)", d.Seed)
	}
}

// TOML renders the resolved experiment for the run folder; Load reads it
// back to the same experiment. The model is its preset and the keys whose
// values differ from the preset's, integers as integers; where that would
// not load back to the same model (a key the preset has and the model
// lacks), every key is written over the default preset instead. A
// checkpoint keeps the model in full as well (resume compares the two).
func (e *Experiment) TOML() ([]byte, error) {
	m, err := e.modelTable()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Experiment %q as the run resolved it: every [train], [data] and [report]\n", e.Name)
	fmt.Fprintf(&buf, "# key, and the model as preset %q with the keys that differ from it.\nname = %q\n\n", m["preset"], e.Name)
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(map[string]any{"model": m}); err != nil {
		return nil, err
	}
	buf.WriteString("\n")
	if err := enc.Encode(struct {
		Train  Options       `toml:"train"`
		Data   DataOptions   `toml:"data"`
		Report ReportOptions `toml:"report"`
	}{e.Train, e.Data, e.Report}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// modelTable is the [model] table of TOML: preset plus the differing keys,
// checked to resolve to e.Model, else the full model over "default".
func (e *Experiment) modelTable() (map[string]any, error) {
	cur, err := tomlTable(e.Model)
	if err != nil {
		return nil, err
	}
	base, err := model.PresetWith(e.Preset, nil)
	if err == nil {
		var baseT map[string]any
		if baseT, err = tomlTable(base); err == nil {
			diff := map[string]any{}
			for k, v := range cur {
				if !reflect.DeepEqual(baseT[k], v) {
					diff[k] = v
				}
			}
			if back, err := model.PresetWith(e.Preset, diff); err == nil && reflect.DeepEqual(back, e.Model) {
				diff["preset"] = e.Preset
				return diff, nil
			}
		}
	}
	cur["preset"] = "default" // optional keys the model lacks are absent: null
	return cur, nil
}

// tomlTable is a struct as the TOML table it encodes to (a nil pointer
// field is absent), with TOML's value types.
func tomlTable(v any) (map[string]any, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	t := map[string]any{}
	_, err := toml.Decode(buf.String(), &t)
	return t, err
}
