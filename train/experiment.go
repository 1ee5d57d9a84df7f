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
// Their doc comments are the [train] table of docs/configuration.md
// (cmd/configdoc writes it).
type Options struct {
	// MicroBatch is the number of sequences per micro-batch: per forward on
	// the CPU, or with fit_micro_batch = false.
	MicroBatch int `toml:"micro_batch"`
	// EvalBatch is the number of sequences per evaluation forward.
	EvalBatch int `toml:"eval_batch"`
	// Accumulation is the number of micro-batches per optimizer step (the
	// loss is divided by it).
	Accumulation int `toml:"accumulation"`
	// FitMicroBatch, on a GPU, runs each step's micro_batch × accumulation
	// sequences (per rank) as the fewest forwards that fit in memory, chosen
	// by trial steps at start-up and logged. The sequences and the loss of
	// every step stay the same (each micro-batch's mean loss keeps its
	// weight, padding included); only floating-point summation order
	// changes. Checkpoints stay in micro-batch units, so a run resumes on a
	// GPU that fits another size. No effect on the CPU.
	FitMicroBatch bool `toml:"fit_micro_batch"`
	// Epochs is the number of passes over the training chunks, unless
	// max_steps.
	Epochs float64 `toml:"epochs"`
	// MaxSteps is the number of optimizer steps (0: from epochs).
	MaxSteps int `toml:"max_steps"`
	// LR is the peak learning rate.
	LR float64 `toml:"lr"`
	// WeightDecay is the decoupled decay; not applied to norm parameters,
	// biases and gains (their model.Role).
	WeightDecay float64 `toml:"weight_decay"`
	// WarmupRatio sets the warmup, ceil(ratio × total) steps, linear from 0.
	WarmupRatio float64 `toml:"warmup_ratio"`
	// Schedule is one of polynomial (power 1 to lr_end, HF's), linear, cosine,
	// constant or constant_with_warmup.
	Schedule Schedule `toml:"schedule"`
	// Power is the polynomial schedule's power.
	Power float64 `toml:"power"`
	// LREnd is the polynomial schedule's final learning rate.
	LREnd float64 `toml:"lr_end"`
	// Optimizer is one of adamw_hf (transformers' AdamW, the original's: ε before
	// bias correction, decay after the update), adamw_torch, soap (Adam in
	// Shampoo's eigenbases, as pytorch_optimizer.SOAP 4.1.0) or muon
	// (torch.optim.Muon on the 2-D hidden matrices, torch.optim.AdamW on
	// embeddings, gains, norms and biases).
	Optimizer Optimizer `toml:"optimizer"`
	// Beta1 is AdamW's β₁ (SOAP's, and that of Muon's AdamW part).
	Beta1 float64 `toml:"beta1"`
	// Beta2 is AdamW's β₂ (SOAP's, and that of Muon's AdamW part).
	Beta2 float64 `toml:"beta2"`
	// Eps is AdamW's ε (SOAP's, and that of Muon's AdamW part).
	Eps float64 `toml:"eps"`
	// MaxGradNorm is the global gradient-norm clip, after unscaling; 0
	// disables it.
	MaxGradNorm float64 `toml:"max_grad_norm"`
	// Precision is one of auto (bf16 on a GPU, fp32 on the CPU), fp32, bf16
	// (autocast, fp32 master weights) or fp16 (autocast with dynamic loss
	// scaling, as the original trained; overflowing steps are skipped and
	// the schedule does not advance).
	Precision Precision `toml:"precision"`
	// EvalEvery is the number of steps between evaluations (the mean loss
	// per sequence over the valid set).
	EvalEvery int `toml:"eval_every"`
	// EvalBatches caps the evaluation batches (0: the whole valid set).
	EvalBatches int `toml:"eval_batches"`
	// LogEvery is the number of steps between train log lines.
	LogEvery int `toml:"log_every"`
	// SaveEvery is the number of steps between checkpoints (one is also
	// written at the end and on Ctrl-C).
	SaveEvery int `toml:"save_every"`
	// Seed seeds the init, the data order and dropout.
	Seed int64 `toml:"seed"`
	// Device is one of auto (CUDA when available), cpu, cuda or cuda:N.
	Device DeviceSetting `toml:"device"`
	// Threads is the number of libtorch CPU threads (0: its default).
	Threads int `toml:"threads"`
	// CPUMatmul is the engine of the float32 matrix products on the CPU
	// (the linear layers and the LM head, forward and backward): auto
	// (the faster here: the BLAS on an Intel CPU, whose MKL runs its own
	// AVX-512 kernels; oneDNN on others where it computes true float32
	// products, else the BLAS; `clm version` says which), onednn
	// (oneDNN's matmul primitive, which libtorch carries; it needs
	// AVX-512) or blas (libtorch's own, MKL on x86).
	// Both are exact float32 with different summation orders: the last
	// bits of a run differ between them, as between thread counts.
	CPUMatmul CPUMatmulSetting `toml:"cpu_matmul"`
	// Attention is the shaped attention's implementation: fused (no T×T
	// matrix; what auto picks where exact) or materialised (as the
	// original).
	Attention model.AttentionImpl `toml:"attention"`
	// CheckpointActivations is none (keep every block's activations for
	// backward) or block (keep each block's input and recompute the block in
	// backward, as torch.utils.checkpoint around every block, dropout
	// replayed): about one more forward for a fraction of the activation
	// memory, with bit-identical losses and gradients; micro-batch fitting
	// on a GPU then finds larger forwards.
	CheckpointActivations model.Checkpointing `toml:"checkpoint_activations"`
	// FusedKernels computes the leaky ReLU, RMSNorm, the residual
	// combinations (and Eq. 6's weight) and the shaped-attention epilogue
	// each as one fused operation with its own backward (CPU kernels, and
	// CUDA kernels where the shim was built with nvcc), equal to the
	// composite ops to rounding, and float32 causal attention on the CPU by
	// clm's kernels (the queries in blocks that skip the masked keys;
	// elsewhere libtorch's SDPA, as with false); false runs the composite
	// ops and SDPA, for A/B checks.
	FusedKernels bool `toml:"fused_kernels"`
	// CUDAGraphs, on a GPU, captures the whole step (forwards, backwards,
	// clipping, AdamW) in a CUDA graph after 3 eager steps and replays it
	// for every later step: one launch per step instead of thousands. It
	// needs AdamW, deferred NaN checks (nan_check_every > 1 or its GPU
	// default), one process and checkpoint_activations = none; an error
	// names what is missing, and true on a CPU is an error before the data
	// are prepared. See hardware.md.
	CUDAGraphs bool `toml:"cuda_graphs"`
	// OnNaN is what a non-finite loss or gradient does: stop the run or skip
	// the step.
	OnNaN NaNPolicy `toml:"on_nan"`
	// NaNCheckEvery is the number of steps between host synchronisations
	// that check the loss and gradient norm: 0 is every step on the CPU and
	// every log_every steps on a GPU, so the GPU step loop never waits for
	// the host; fp16 and on_nan = skip check every step.
	NaNCheckEvery int `toml:"nan_check_every"`
	// DistTimeout is how long, in seconds, a data-parallel collective waits
	// for the other ranks (a rank that died makes the others stop).
	DistTimeout float64 `toml:"dist_timeout"`
	// InitFrom warm-starts a new run from the weights of another run: a run
	// folder (its latest checkpoint, resolved when the run starts and
	// written so into the run's config.toml) or a checkpoint folder; or from
	// a Hugging Face GPT-2: a model folder or hub:org/name[@revision] (pinned
	// to its commit when the run starts). Only the weights are taken: the
	// optimizer, schedule, data order and step start afresh, and the model
	// must be the same architecture (refused before anything is written
	// otherwise). Empty: initialise.
	InitFrom string `toml:"init_from"`
	// Optim are the [train.optim] keys of SOAP and Muon.
	Optim OptimOptions `toml:"optim"`
}

// OptimOptions are the [train.optim] keys: SOAP's and Muon's own settings
// (both take lr, weight_decay, beta1, beta2 and eps from [train]; Muon's
// AdamW part too). Their JSON is what scripts/reference/train.py's --optim
// takes.
type OptimOptions struct {
	// PreconditionFrequency is SOAP's number of steps between eigenbasis
	// refreshes (one power iteration and a QR decomposition).
	PreconditionFrequency int `toml:"precondition_frequency" json:"precondition_frequency"`
	// MaxPreconditionDim is SOAP's largest preconditioned dimension; larger
	// ones keep the identity (the vocabulary side of wte).
	MaxPreconditionDim int `toml:"max_precondition_dim" json:"max_precondition_dim"`
	// ShampooBeta is SOAP's decay of the preconditioner statistics; −1 is
	// beta2.
	ShampooBeta float64 `toml:"shampoo_beta" json:"shampoo_beta"`
	// Precondition1D makes SOAP precondition 1-D parameters too (else they
	// take Adam updates).
	Precondition1D bool `toml:"precondition_1d" json:"precondition_1d"`
	// NormalizeGradient makes SOAP divide each update by its RMS.
	NormalizeGradient bool `toml:"normalize_gradient" json:"normalize_gradient"`
	// Momentum is Muon's momentum.
	Momentum float64 `toml:"momentum" json:"momentum"`
	// Nesterov makes Muon's momentum Nesterov's.
	Nesterov bool `toml:"nesterov" json:"nesterov"`
	// NSSteps is Muon's number of Newton–Schulz iterations (in bfloat16, as
	// torch's).
	NSSteps int `toml:"ns_steps" json:"ns_steps"`
	// AdjustLR is Muon's learning rate per matrix, with A = fan-out and B =
	// fan-in (clm stores W as [in, out], so A, B = out, in, as
	// torch.optim.Muon reads nn.Linear's [out, in]): original
	// (× √max(1, A/B)), match_rms_adamw (× 0.2·√max(A, B), so AdamW's lr
	// carries over) or spectral_unclamped.
	AdjustLR string `toml:"adjust_lr" json:"adjust_lr"`
}

// DataOptions are the [data] keys.
type DataOptions struct {
	// Source is one of stdlib (the local Python standard library), dir (a source
	// tree), hf (dataset files on disk: parquet, json, jsonl, .gz, or the
	// Hub cache layout) or hub (a dataset repository on the Hugging Face
	// Hub; the figure experiments).
	Source string `toml:"source"`
	// Path is the directory or files of dir and hf.
	Path string `toml:"path"`
	// Extensions filter the files of dir and stdlib.
	Extensions []string `toml:"extensions"`
	// Column is the text column of hf and hub files.
	Column string `toml:"column"`
	// ValidPath names separate validation files of dir and hf (CodeParrot's
	// -valid); empty: 5% of the documents by a hash of their name.
	ValidPath string `toml:"valid_path"`
	// Dataset is the Hub dataset of source hub, e.g.
	// huggingface-course/codeparrot-ds-train, read as datasets.load_dataset
	// reads it.
	Dataset string `toml:"dataset"`
	// ValidDataset is a separate Hub validation dataset
	// (huggingface-course/codeparrot-ds-valid); empty: a hash split of
	// dataset.
	ValidDataset string `toml:"valid_dataset"`
	// Revision is the branch, tag or commit of dataset.
	Revision string `toml:"revision"`
	// ValidRevision is the branch, tag or commit of valid_dataset (empty:
	// revision).
	ValidRevision string `toml:"valid_revision"`
	// Split is the split of dataset read, as load_dataset(..., split=...).
	Split string `toml:"split"`
	// ValidSplit is the split of the validation dataset read.
	ValidSplit string `toml:"valid_split"`
	// Tokenizer is a tokenizer.json (or a directory, or vocab.json:merges.txt),
	// or hub:org/name[@revision] on the Hub; empty: train one on the corpus
	// (cached under $CLM_CACHE/tokenizers).
	Tokenizer string `toml:"tokenizer"`
	// TokenizerVocab is the vocabulary of a tokenizer trained that way.
	TokenizerVocab int `toml:"tokenizer_vocab"`
	// NumTokenMult takes num_token_mult × 100000 training documents (all,
	// with a warning, if fewer).
	NumTokenMult float64 `toml:"num_token_mult"`
	// ValidDocs is the number of validation documents.
	ValidDocs int `toml:"valid_docs"`
	// ValidFraction is the held-out share without a validation corpus.
	ValidFraction float64 `toml:"valid_fraction"`
	// Seed is the document shuffle seed: the original's
	// Dataset.shuffle(seed=0).
	Seed int64 `toml:"seed"`
}

// ReportOptions are the [report] keys: the statistics logged during training.
type ReportOptions struct {
	// Every is the number of steps between statistics, which are also
	// logged at the first and last step (0: never).
	Every int `toml:"every"`
	// Outliers logs the kurtosis, max/median ratio, and feature and batch
	// correlations per layer.
	Outliers bool `toml:"outliers"`
	// Entropy logs the attention entropy per layer.
	Entropy bool `toml:"entropy"`
	// Gains logs every gain's value (mean and std over heads).
	Gains bool `toml:"gains"`
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
			EvalEvery: 500, LogEvery: 500, SaveEvery: 10000, Device: DeviceAuto, CPUMatmul: CPUMatmulAuto, Attention: model.AttentionAuto, OnNaN: "stop",
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
	if err := t.Device.Parse(); err != nil {
		v.bad("train.device", "%v", err)
	}
	if err := t.CPUMatmul.Parse(); err != nil {
		v.bad("train.cpu_matmul", "%v", err)
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
