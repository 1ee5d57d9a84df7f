package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"clm/data"
	"clm/data/corpus"
	"clm/hub"
	"clm/internal/atomicfile"
	"clm/model"
	"clm/torch"
	"clm/train"
)

func init() {
	register("train", "train a model: clm -config FILE [-set key=value ...] | clm -resume RUN_DIR", runTrain)
}

// batcher adapts data.Batcher to train.Batches.
type batcher struct{ *data.Batcher }

func (b batcher) MarshalState() ([]byte, error) { return json.Marshal(b.State()) }
func (b batcher) UnmarshalState(raw []byte) error {
	var s data.BatcherState
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	return b.Restore(s)
}

func runTrain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("clm", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", "", "experiment file (TOML), e.g. experiments/skipless.toml")
	resume := fs.String("resume", "", "run folder to continue from its latest checkpoint")
	runDir := fs.String("run-dir", "", "run folder (default runs/<experiment name>)")
	var sets setFlags
	fs.Var(&sets, "set", "override a key, e.g. -set model.n_layer=18 -set train.lr=3e-4 (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			usage(os.Stderr)
			fmt.Fprintln(os.Stderr, "\ntrain flags:")
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%v (see clm -h)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags come first: clm -config FILE)", fs.Arg(0))
	}
	var exp *train.Experiment
	var err error
	dir := *runDir
	switch {
	case *resume != "" && *configPath != "":
		return errors.New("give -config or -resume, not both (a run folder keeps its own config.toml)")
	case *resume != "":
		dir = *resume
		cfg := filepath.Join(dir, "config.toml")
		if _, err := os.Stat(cfg); err != nil {
			return fmt.Errorf("resume: %s is not a run folder (no config.toml)", dir)
		}
		if exp, err = train.Load(cfg, sets.values); err != nil {
			return err
		}
	case *configPath != "":
		if exp, err = train.Load(*configPath, sets.values); err != nil {
			return err
		}
		if dir == "" {
			dir = filepath.Join("runs", exp.Name)
		}
	default:
		usage(os.Stderr)
		return errUsage
	}
	// One writer per run folder: rank 0 of a data-parallel run holds the lock.
	if os.Getenv("RANK") == "" || os.Getenv("RANK") == "0" {
		lock, err := train.LockRun(dir)
		if err != nil {
			return err
		}
		defer lock.Release()
	}
	if ck, _ := train.LatestCheckpoint(dir); ck != "" && *resume == "" {
		return fmt.Errorf("run folder %s already has checkpoints; continue it with `clm -resume %s`, or pick another with -run-dir", dir, dir)
	}

	// Data parallelism: launched by torchrun (or any launcher that sets
	// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
	t := &exp.Train
	var group *torch.ProcessGroup
	rank := 0
	if ws := os.Getenv("WORLD_SIZE"); ws != "" && ws != "1" {
		o, err := torch.ProcessGroupOptionsFromEnv()
		if err != nil {
			return err
		}
		rank = o.Rank
		o.Backend = "gloo"
		if torch.CUDAAvailable() && t.Device != "cpu" {
			o.Backend = "nccl"
		}
		o.Timeout = time.Duration(t.DistTimeout * float64(time.Second))
		if group, err = torch.NewProcessGroup(o); err != nil {
			return fmt.Errorf("data parallel (rank %d of %d): %w", o.Rank, o.WorldSize, err)
		}
		defer group.Close()
	}

	// Device and threads.
	dev := torch.DefaultDevice()
	if group != nil && dev.IsCUDA() {
		dev = torch.CUDA(group.LocalRank())
	}
	if t.Device != "auto" && t.Device != "" {
		if dev, err = torch.ParseDevice(t.Device); err != nil {
			return fmt.Errorf("train.device: %v", err)
		}
	}
	if err := torch.CheckDevice(dev); err != nil {
		return fmt.Errorf("train.device: %v", err)
	}
	if err := train.CheckMemory(exp, dev); err != nil {
		return err
	}
	if t.Threads > 0 {
		if err := torch.SetNumThreads(t.Threads); err != nil {
			return err
		}
	}

	ctx, stop := signalContext()
	defer stop()
	var logw io.Writer = os.Stderr
	if rank != 0 {
		logw = io.Discard // rank 0 speaks for the run
		// Rank 0 builds the tokenizer and token caches first.
		if err := group.Barrier(); err != nil {
			return fmt.Errorf("data parallel: waiting for rank 0 to prepare the data: %w", err)
		}
	}

	// Data: corpus (downloaded from the Hub if it lives there), tokenizer,
	// token cache.
	opts, err := data.Resolve(ctx, dataOptions(exp, logw))
	if err != nil {
		return dataErr(ctx, exp, err)
	}
	tokPath := opts.Tokenizer
	if tokPath == "" {
		if tokPath, err = data.CachedTokenizer(ctx, opts.Train, exp.Data.TokenizerVocab, data.DefaultProgress(logw), logw); err != nil {
			return dataErr(ctx, exp, err)
		}
		exp.Data.Tokenizer = tokPath // recorded in the run's config.toml
		opts.Tokenizer = tokPath
	}
	ds, err := data.Prepare(ctx, opts)
	if err != nil {
		return dataErr(ctx, exp, err)
	}
	defer ds.Close()
	if rank == 0 && group != nil {
		if err := group.Barrier(); err != nil {
			return fmt.Errorf("data parallel: %w", err)
		}
	}
	fmt.Fprint(logw, ds.Summary())
	vocab := ds.Tokenizer.VocabSize()
	if _, set := exp.ModelOverrides["vocab_size"]; set && exp.Model.VocabSize < vocab {
		return fmt.Errorf("model.vocab_size %d is smaller than the tokenizer's vocabulary %d (%s)", exp.Model.VocabSize, vocab, tokPath)
	} else if !set {
		exp.Model.VocabSize = vocab
	}
	padID := int64(-1)
	if id, ok := ds.Tokenizer.ID("<|endoftext|>"); ok {
		padID = int64(id) // the original's collator ignores labels equal to pad = eos
	}
	b, err := data.NewBatcher(ds.Train, t.MicroBatch, t.Seed)
	if err != nil {
		return fmt.Errorf("train.micro_batch: %v", err)
	}

	// The run folder and its resolved config.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	resolved, err := exp.TOML()
	if err != nil {
		return err
	}
	if *resume == "" && rank == 0 {
		if err := atomicfile.Write(filepath.Join(dir, "config.toml"), resolved, 0o644); err != nil {
			return err
		}
	}

	attn, _ := model.ParseAttentionImpl(t.Attention)
	m, err := model.New(exp.Model, model.Options{Device: dev, DType: torch.Float32, Attention: attn})
	if err != nil {
		return err
	}
	defer m.Close()
	torch.ManualSeed(uint64(t.Seed))
	if err := m.Init(); err != nil {
		return err
	}
	tr, err := train.NewTrainer(train.Config{Experiment: exp, Dir: dir, Model: m, Batches: batcher{b}, Valid: ds.Valid,
		TotalSteps: train.TotalSteps(exp, ds.Train.Len()), PadID: padID, Log: logw, Progress: progressFor(rank, logw), Group: group})
	if err != nil {
		return err
	}
	defer tr.Close()
	total, trainable := exp.Model.ParamCount()
	fmt.Fprintf(logw, "model %s: %.2fM parameters (%.2fM trainable) on %v, %s, attention %v\n",
		exp.Preset, float64(total)/1e6, float64(trainable)/1e6, dev, t.Precision, attn)
	if *resume != "" {
		ok, err := tr.Resume()
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintf(logw, "resume: %s has no checkpoint yet; starting from step 0\n", dir)
		}
	}
	stopNote.Store("stopping after this step and saving a checkpoint (again to quit at once)")
	if err := tr.Run(ctx); err != nil {
		if errors.Is(err, train.ErrInterrupted) {
			fmt.Fprintf(stdout, "interrupted at step %d; continue with: clm -resume %s\n", tr.State().Step, dir)
			return errInterrupted
		}
		return err
	}
	fmt.Fprintf(stdout, "done: %d steps; run folder %s (plot with: clm plot %s)\n", tr.State().Step, dir, dir)
	return nil
}

// dataErr reports an interruption during data preparation as such (exit
// 130), saying what was kept, and adds the way out to a Hub that cannot be
// used: the experiment's local alternative.
func dataErr(ctx context.Context, exp *train.Experiment, err error) error {
	if ctx.Err() == nil {
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
	fmt.Fprintln(os.Stderr, "clm: interrupted while preparing the data, before training: the run folder is as it was; finished Hub downloads stay in the Hub cache (a partial one resumes) and the token cache is rebuilt next time")
	return errInterrupted
}

// dataOptions maps an experiment's [data] keys to data.Options.
func dataOptions(exp *train.Experiment, logw io.Writer) data.Options {
	d := exp.Data
	src := corpus.Source{Kind: d.Source, Path: d.Path, Extensions: d.Extensions, Column: d.Column}
	opts := data.Options{Train: src, Tokenizer: d.Tokenizer, ContextLength: exp.Model.ContextLength,
		NumTokenMult: d.NumTokenMult, ValidDocs: d.ValidDocs, ValidFraction: d.ValidFraction,
		Seed: d.Seed, Log: logw, Progress: data.DefaultProgress(logw)}
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

// progressFor shows progress on rank 0 only.
func progressFor(rank int, w io.Writer) train.Progress {
	if rank != 0 {
		return nil
	}
	return train.NewProgress(w)
}

// errInterrupted exits with 130 like a shell's Ctrl-C.
var errInterrupted = errors.New("interrupted")

// stopNote is what the first SIGINT or SIGTERM announces; it changes
// once training starts.
var stopNote atomic.Value

func init() { stopNote.Store("stopping (again to quit at once)") }

// signalContext is cancelled by the first SIGINT or SIGTERM (the run saves
// a checkpoint and stops); a second one exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		n := 0
		for range ch {
			if n++; n == 1 {
				fmt.Fprintf(os.Stderr, "\nclm: %s\n", stopNote.Load())
				cancel()
			} else {
				fmt.Fprintln(os.Stderr, "clm: quit")
				os.Exit(130)
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
