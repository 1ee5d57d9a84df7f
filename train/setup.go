package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"clm/data"
	"clm/data/corpus"
	"clm/hub"
	"clm/internal/atomicfile"
	"clm/model"
	"clm/torch"
)

// SetupOptions are the choices of Setup that are not in the experiment.
type SetupOptions struct {
	// Dir is the run folder.
	Dir string
	// Resume continues the run folder from its latest checkpoint (or from
	// step 0 when it has none yet); without it the folder must have no
	// checkpoint.
	Resume bool
	// Log receives rank 0's messages (other ranks stay quiet).
	Log io.Writer
	// Progress shows a progress display on rank 0's Log.
	Progress bool
	// Command is the command line, recorded in the run folder's StartsFile.
	Command []string
	// Profile names steps to profile with libtorch's profiler (written to
	// the run folder's profile/); the zero value profiles none.
	Profile ProfileSteps
}

// Run is an experiment ready to train in its run folder: the process group
// of a data-parallel launch, the device, the prepared data, the initialised
// (or resumed) model and its trainer. It owns them all; Close releases them.
type Run struct {
	Exp     *Experiment
	Dir     string
	Device  torch.Device
	Rank    int
	Model   *model.Model
	Trainer *Trainer

	opts    SetupOptions
	log     io.Writer
	group   *torch.ProcessGroup // nil for one process
	peers   replicas            // the group, or solo
	ds      *data.Dataset
	pad     model.Pad
	initHF  *hfModel       // the Hugging Face model of train.init_from, if it is one
	closers []func() error // in order of acquisition
}

// ErrDataInterrupted is returned by Setup when its context was cancelled
// while the data were being prepared; nothing of the run folder changed.
var ErrDataInterrupted = errors.New("interrupted while preparing the data, before training: the run folder is as it was; finished Hub downloads stay in the Hub cache (a partial one resumes) and the token cache is rebuilt next time")

// Setup prepares exp to train in o.Dir: it takes the run folder's lock,
// joins the process group of a data-parallel launch (torchrun's RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), picks the device and
// threads, prepares the data (downloading from the Hub if it lives there),
// reconciles the vocabulary size with the tokenizer, writes the resolved
// config.toml, builds and initialises the model from train.seed, and
// builds the trainer, resumed from the latest checkpoint with o.Resume.
func Setup(ctx context.Context, exp *Experiment, o SetupOptions) (*Run, error) {
	r := &Run{Exp: exp, Dir: o.Dir, opts: o, log: o.Log, peers: solo{}}
	if r.log == nil {
		r.log = io.Discard
	}
	steps := []func() error{r.lock, r.joinGroup, r.pickDevice, r.resolveInitFrom, func() error { return r.prepareData(ctx) },
		r.checkInitFrom, r.writeConfig, r.buildModel, r.warmStart, r.buildTrainer, r.recordStart}
	for _, step := range steps {
		if err := step(); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// Close releases what Setup acquired, in reverse order.
func (r *Run) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i]())
	}
	r.closers = nil
	return errors.Join(errs...)
}

// onClose registers a release.
func (r *Run) onClose(f func() error) { r.closers = append(r.closers, f) }

// lock takes the run folder (one writer per folder: rank 0 of a
// data-parallel run holds it). A new run into a folder that holds one
// continues it when it is the same experiment, and is refused with the
// differences when it is another.
func (r *Run) lock() error {
	if rank := os.Getenv("RANK"); rank == "" || rank == "0" {
		l, err := LockRun(r.Dir)
		if err != nil {
			return err
		}
		r.onClose(func() error { l.Release(); return nil })
		RepairCheckpoints(r.Dir) // under the lock: no other process writes here now
	}
	if r.opts.Resume {
		return nil
	}
	run, err := CheckFolder(r.Dir, r.Exp)
	if err != nil {
		return err
	}
	if run != nil {
		r.Exp.adoptDerived(run)
		r.opts.Resume = true
		fmt.Fprintf(r.log, "run folder %s holds this experiment: continuing it\n", r.Dir)
		return nil
	}
	if ck, _ := LatestCheckpoint(r.Dir); ck != "" {
		return fmt.Errorf("run folder %s already has checkpoints; continue it with `clm -resume %s`, or pick another with -run-dir", r.Dir, r.Dir)
	}
	return nil
}

// joinGroup joins the process group when launched data-parallel: NCCL
// between CUDA devices, gloo otherwise.
func (r *Run) joinGroup() error {
	ws := os.Getenv("WORLD_SIZE")
	if ws == "" || ws == "1" {
		return nil
	}
	o, err := torch.ProcessGroupOptionsFromEnv()
	if err != nil {
		return err
	}
	r.Rank = o.Rank
	o.Backend = "gloo"
	if torch.CUDAAvailable() && !r.Exp.Train.Device.IsCPU() {
		o.Backend = "nccl"
	}
	o.Timeout = time.Duration(r.Exp.Train.DistTimeout * float64(time.Second))
	if r.group, err = torch.NewProcessGroup(o); err != nil {
		return fmt.Errorf("data parallel (rank %d of %d): %w", o.Rank, o.WorldSize, err)
	}
	r.onClose(func() error { r.group.Close(); return nil })
	r.peers = r.group
	if r.Rank != 0 {
		r.log = io.Discard // rank 0 speaks for the run
	}
	return nil
}

// pickDevice chooses train.device (auto: the local rank's GPU, or the CPU
// on a machine without NVIDIA GPUs), checks that the model fits, and sets
// train.threads and train.cpu_matmul's engine.
func (r *Run) pickDevice() error {
	t := &r.Exp.Train
	dev, err := t.Device.Resolve()
	switch {
	case err != nil && t.Device.Auto():
		return fmt.Errorf("train.device = \"auto\": %v; or train on the CPU: -set train.device=cpu", err)
	case err != nil:
		return fmt.Errorf("train.device: %v", err)
	case t.Device.Auto() && r.peers.Size() > 1 && dev.IsCUDA():
		dev = torch.CUDA(r.peers.LocalRank())
		if err := torch.CheckDevice(dev); err != nil {
			return fmt.Errorf("train.device: %v", err)
		}
	}
	r.Device = dev
	world := r.peers.Size()
	// Refusals that depend on the device come before the data are prepared.
	if err := checkGraphs(t, dev, world); err != nil {
		return err
	}
	if err := CheckMemory(r.Exp, dev); err != nil {
		return err
	}
	// Before any libtorch work (the engine's probe is some), so that every
	// OS thread starts with it (the count is per thread once a thread has
	// run an op).
	if err := torch.SetNumThreads(threadCount(t)); err != nil {
		return err
	}
	engine, err := t.CPUMatmul.Resolve()
	if err != nil {
		return err
	}
	return torch.SetCPUMatmul(engine)
}

// prepareData resolves the corpus and tokenizer (training a tokenizer when
// the experiment names none), builds or opens the token cache, and fits
// the model's vocabulary and pad id to the tokenizer. Rank 0 prepares
// while the other ranks wait, then they open what it built.
func (r *Run) prepareData(ctx context.Context) error {
	if r.Rank != 0 {
		if err := r.peers.Barrier(); err != nil {
			return fmt.Errorf("data parallel: waiting for rank 0 to prepare the data: %w", err)
		}
	}
	ds, err := prepare(ctx, r.Exp, r.log)
	if err != nil {
		return dataErr(ctx, r.Exp, err)
	}
	r.ds = ds
	r.onClose(ds.Close)
	if r.Rank == 0 {
		if err := r.peers.Barrier(); err != nil {
			return fmt.Errorf("data parallel: %w", err)
		}
	}
	fmt.Fprint(r.log, ds.Summary())
	vocab := ds.Tokenizer.VocabSize()
	if _, set := r.Exp.ModelOverrides["vocab_size"]; set && r.Exp.Model.VocabSize < vocab {
		return fmt.Errorf("model.vocab_size %d is smaller than the tokenizer's vocabulary %d (%s)", r.Exp.Model.VocabSize, vocab, r.Exp.Data.Tokenizer)
	} else if !set {
		r.Exp.Model.VocabSize = vocab
	}
	if id, ok := ds.Tokenizer.ID("<|endoftext|>"); ok {
		r.pad = model.PadToken(int64(id)) // the original's collator ignores labels equal to pad = eos
	}
	return nil
}

// prepare resolves and prepares exp's data; a tokenizer trained on the
// corpus is recorded in exp (and so in the run's config.toml).
func prepare(ctx context.Context, exp *Experiment, log io.Writer) (*data.Dataset, error) {
	opts, err := data.Resolve(ctx, dataOptions(exp, log))
	if err != nil {
		return nil, err
	}
	if opts.Tokenizer == "" {
		tok, err := data.CachedTokenizer(ctx, opts.Train, exp.Data.TokenizerVocab, data.DefaultProgress(log), log)
		if err != nil {
			return nil, err
		}
		exp.Data.Tokenizer, opts.Tokenizer = tok, tok
	}
	return data.Prepare(ctx, opts)
}

// dataOptions maps an experiment's [data] keys to data.Options.
func dataOptions(exp *Experiment, log io.Writer) data.Options {
	d := exp.Data
	src := corpus.Source{Kind: d.Source, Path: d.Path, Extensions: d.Extensions, Column: d.Column}
	opts := data.Options{Train: src, Tokenizer: d.Tokenizer, ContextLength: exp.Model.ContextLength,
		NumTokenMult: d.NumTokenMult, ValidDocs: d.ValidDocs, ValidFraction: d.ValidFraction,
		Seed: d.Seed, Log: log, Progress: data.DefaultProgress(log)}
	switch {
	case d.Source == corpus.KindHub:
		opts.Train = corpus.Source{Kind: corpus.KindHub, Repo: d.Dataset, Revision: d.Revision, Split: d.Split, Column: d.Column}
		if d.ValidDataset != "" {
			opts.Valid = data.HubValid(opts.Train, d.ValidDataset, d.ValidRevision, d.ValidSplit)
		}
	case d.ValidPath != "":
		v := src
		v.Path = d.ValidPath
		opts.Valid = &v
	}
	return opts
}

// dataErr reports an interruption during data preparation as
// ErrDataInterrupted, and adds the way out to a Hub that cannot be used:
// the experiment's local alternative.
func dataErr(ctx context.Context, exp *Experiment, err error) error {
	if ctx.Err() != nil {
		return ErrDataInterrupted
	}
	if hub.IsKind(err, hub.KindUnavailable) || hub.IsKind(err, hub.KindOffline) {
		alt := "-set data.source=stdlib"
		if strings.HasPrefix(exp.Data.Tokenizer, data.HubPrefix) {
			alt += ` -set 'data.tokenizer=""'`
		}
		if exp.Data.Source != corpus.KindHub {
			alt = `-set 'data.tokenizer=""' (trains a tokenizer on the corpus)`
		}
		return fmt.Errorf("%w; or do without the Hub: %s", err, alt)
	}
	return err
}

// writeConfig creates the run folder and, for a new run, writes its
// resolved config.toml (what -resume reads back).
func (r *Run) writeConfig() error {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return err
	}
	if r.opts.Resume || r.Rank != 0 {
		return nil // the folder's config.toml stands; other ranks write nothing
	}
	resolved, err := r.Exp.TOML()
	if err != nil {
		return err
	}
	return atomicfile.Write(RunConfig(r.Dir), resolved, 0o644)
}

// resolveInitFrom names the checkpoint of train.init_from, for a new run:
// a run folder's latest checkpoint now, so that the run's config.toml
// records which one it started from.
func (r *Run) resolveInitFrom() error {
	from := r.Exp.Train.InitFrom
	if from == "" || r.opts.Resume {
		return nil
	}
	if IsHF(from) {
		return r.resolveHFInit()
	}
	if _, err := os.Stat(filepath.Join(from, stateFile)); err == nil {
		return nil // a checkpoint folder
	}
	ck, err := LatestCheckpoint(from)
	switch {
	case err != nil:
		return fmt.Errorf("train.init_from: %w", err)
	case ck == "":
		return fmt.Errorf("train.init_from: %s is neither a checkpoint folder nor a run folder with a checkpoint", from)
	}
	r.Exp.Train.InitFrom = ck
	return nil
}

// checkInitFrom refuses a warm start from another architecture, before
// the run folder is written (the vocabulary is known once the data are).
func (r *Run) checkInitFrom() error {
	from := r.Exp.Train.InitFrom
	if from == "" || r.opts.Resume {
		return nil
	}
	if r.initHF != nil {
		return r.checkHFInit()
	}
	cfg, err := ReadModelConfig(from)
	if err != nil {
		return fmt.Errorf("train.init_from: %w", err)
	}
	if diff := configDiff(cfg, r.Exp.Model); diff != "" {
		return fmt.Errorf("train.init_from: %s is another model: %s", from, diff)
	}
	return nil
}

// warmStart loads the weights of train.init_from into a new run's model.
func (r *Run) warmStart() error {
	from := r.Exp.Train.InitFrom
	if from == "" || r.opts.Resume {
		return nil
	}
	if r.initHF != nil {
		return r.warmStartHF()
	}
	if err := LoadWeights(from, r.Model); err != nil {
		return fmt.Errorf("train.init_from: %w", err)
	}
	fmt.Fprintf(r.log, "warm start: the weights of %s; optimizer, schedule and data order start afresh\n", from)
	return nil
}

// buildModel allocates the model on the device and initialises it from
// train.seed.
func (r *Run) buildModel() error {
	m, err := model.New(r.Exp.Model, model.Options{Device: r.Device, DType: torch.Float32, Attention: r.Exp.Train.Attention, FusedKernels: r.Exp.Train.FusedKernels})
	if err != nil {
		return err
	}
	r.Model = m
	r.onClose(func() error { m.Close(); return nil })
	torch.ManualSeed(uint64(r.Exp.Train.Seed))
	return m.Init()
}

// buildTrainer builds the trainer over the prepared data and, with Resume,
// restores the latest checkpoint.
func (r *Run) buildTrainer() error {
	b, err := data.NewBatcher(r.ds.Train, r.Exp.Train.MicroBatch, r.Exp.Train.Seed)
	if err != nil {
		return fmt.Errorf("train.micro_batch: %v", err)
	}
	var progress Progress
	if r.opts.Progress && r.Rank == 0 {
		progress = NewProgress(r.log)
	}
	tr, err := NewTrainer(Config{Experiment: r.Exp, Dir: r.Dir, Model: r.Model, Batches: batcher{b}, Valid: r.ds.Valid,
		TotalSteps: TotalSteps(r.Exp, r.ds.Train.Len()), Pad: r.pad, Log: r.log, Progress: progress, Group: r.group,
		Profile: r.opts.Profile})
	if err != nil {
		return err
	}
	r.Trainer = tr
	r.onClose(tr.Close)
	total, trainable := r.Exp.Model.ParamCount()
	fmt.Fprintf(r.log, "model %s: %.2fM parameters (%.2fM trainable) on %v, %s, attention %v\n",
		r.Exp.Preset, float64(total)/1e6, float64(trainable)/1e6, r.Device, r.Exp.Train.Precision.on(r.Device), r.Model.Options().Attention)
	if !r.opts.Resume {
		return nil
	}
	ok, err := tr.Resume()
	if err == nil && !ok {
		fmt.Fprintf(r.log, "resume: %s has no checkpoint yet; starting from step 0\n", r.Dir)
	}
	return err
}

// batcher adapts data.Batcher to Batches.
type batcher struct{ *data.Batcher }

func (b batcher) MarshalState() ([]byte, error) { return json.Marshal(b.State()) }
func (b batcher) UnmarshalState(raw []byte) error {
	var s data.BatcherState
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	return b.Restore(s)
}
