package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"clm/internal/atomicfile"
	"clm/internal/fault"
	"clm/model"
	"clm/optim"
	"clm/safetensors"
	"clm/torch"
)

// State is everything besides tensors that a checkpoint must restore for an
// exact resume.
type State struct {
	// Step is the number of optimizer steps taken (HF global_step).
	Step int `json:"step"`
	// SchedStep is the schedule's position: it does not advance on steps
	// skipped by fp16 overflow.
	SchedStep int `json:"sched_step"`
	// TotalSteps is the schedule length.
	TotalSteps int `json:"total_steps"`
	// Tokens trained on so far.
	Tokens int64 `json:"tokens"`
	// LossScale and GrowthTracker are the fp16 dynamic loss scaler's state.
	LossScale     float64 `json:"loss_scale"`
	GrowthTracker int     `json:"growth_tracker"`
	// SkippedSteps counts steps skipped for overflow or NaN.
	SkippedSteps int `json:"skipped_steps"`
	// LogLossSum and LogSteps accumulate the loss since the last log line.
	LogLossSum float64 `json:"log_loss_sum"`
	LogSteps   int     `json:"log_steps"`
	// Data is the training batcher's cursor.
	Data json.RawMessage `json:"data"`
	// Experiment is the resolved experiment TOML the run was started with.
	Experiment string `json:"experiment"`
	// LibTorch is the libtorch version that wrote the checkpoint.
	LibTorch string `json:"libtorch"`
	// PendingEval: the evaluation of this step was interrupted; a resumed
	// run does it first, so that the run log is the uninterrupted run's.
	PendingEval bool `json:"pending_eval,omitempty"`
}

const (
	checkpointDir = "checkpoints"
	latestFile    = "latest"
	modelFile     = "model.safetensors"
	optimFile     = "optimizer.safetensors"
	stateFile     = "state.json"
)

// CheckpointPath returns the folder of the checkpoint of step in run dir.
func CheckpointPath(dir string, step int) string {
	return filepath.Join(dir, checkpointDir, fmt.Sprintf("step-%08d", step))
}

// SaveCheckpoint writes model weights (with the resolved model config in
// the metadata), optimizer state, generator states and st into a new
// checkpoint folder of run dir. The folder is written under a temporary
// name and renamed, then `latest` is replaced atomically: a crash leaves
// the previous checkpoint intact.
func SaveCheckpoint(dir string, m *model.Model, opt optim.Optimizer, st State, devs []torch.Device) (string, error) {
	final := CheckpointPath(dir, st.Step)
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	cfgJSON, err := m.Config().JSON()
	if err != nil {
		return "", err
	}
	meta := map[string]string{"config": string(cfgJSON), "step": strconv.Itoa(st.Step), "format": "clm-weights-1"}
	if err := torch.SaveSafetensors(filepath.Join(tmp, modelFile), m.State(), meta); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	s := torch.NewScope()
	defer s.Close()
	optTensors, optMeta, err := opt.State()
	if err != nil {
		return "", fmt.Errorf("checkpoint: optimizer state: %w", err)
	}
	for _, d := range devs {
		rng, err := torch.RNGState(d)
		if err != nil {
			return "", fmt.Errorf("checkpoint: generator state of %v: %w", d, err)
		}
		optTensors = append(optTensors, torch.Named{Name: "rng." + d.String(), Tensor: rng})
	}
	if optMeta["flavour"] == "" {
		optMeta["flavour"] = opt.Name() // the optimizer's name (AdamW's flavour)
	}
	if err := torch.SaveSafetensors(filepath.Join(tmp, optimFile), optTensors, optMeta); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	stJSON, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileSync(filepath.Join(tmp, stateFile), stJSON); err != nil {
		return "", err
	}
	syncDir(tmp)
	crashPoint("written")
	if err := install(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	latest := filepath.Join(dir, checkpointDir, latestFile)
	if err := writeFileSync(latest+".tmp", []byte(filepath.Base(final)+"\n")); err != nil {
		return "", err
	}
	crashPoint("latest written")
	if err := os.Rename(latest+".tmp", latest); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	syncDir(filepath.Join(dir, checkpointDir))
	crashPoint("latest moved")
	return final, nil
}

// crashPoint marks the stages of SaveCheckpoint where a crash is tested:
// CLM_FAULT=checkpoint.<stage>@n kills the process there (package fault);
// in-process tests replace it.
var crashPoint = func(stage string) { fault.Point("checkpoint." + stage) }

// renameExchange swaps two paths atomically (Linux renameat2
// RENAME_EXCHANGE); tests replace it to take the fallback path.
var renameExchange = func(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}

// install puts the complete folder tmp in place of final. A folder already
// there (a step saved again) is swapped out in one atomic exchange, so a
// crash at any moment leaves final whole: old or new. Where the file system
// cannot exchange, the old folder is first renamed to final.old, which
// LatestCheckpoint puts back if a crash leaves no final.
func install(tmp, final string) error {
	parent := filepath.Dir(final)
	if _, err := os.Stat(final); err != nil {
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		syncDir(parent)
		crashPoint("renamed")
		return nil
	}
	if err := renameExchange(tmp, final); err == nil {
		syncDir(parent)
		crashPoint("exchanged") // tmp holds the old folder now
		return os.RemoveAll(tmp)
	}
	old := final + ".old"
	os.RemoveAll(old)
	if err := os.Rename(final, old); err != nil {
		return err
	}
	crashPoint("old moved aside")
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	syncDir(parent)
	crashPoint("renamed")
	return os.RemoveAll(old)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: %w", err)
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// LatestCheckpoint returns the folder of the newest complete checkpoint of
// run dir, or "" when there is none. It only reads: a step folder that a
// crash left moved aside (step-N.old without a complete step-N) counts as
// step N where it lies; RepairCheckpoints, under the run lock, puts it back.
func LatestCheckpoint(dir string) (string, error) {
	ckdir := filepath.Join(dir, checkpointDir)
	if b, err := os.ReadFile(filepath.Join(ckdir, latestFile)); err == nil {
		if p := completeCheckpoint(ckdir, strings.TrimSpace(string(b))); p != "" {
			return p, nil
		}
	}
	// Fall back to the highest complete step folder.
	names, err := completeSteps(ckdir)
	if err != nil || len(names) == 0 {
		return "", err
	}
	return completeCheckpoint(ckdir, names[len(names)-1]), nil
}

// completeCheckpoint is the folder of the complete checkpoint named name
// (step-N, or step-N.old where a crash left it) in ckdir, or "".
func completeCheckpoint(ckdir, name string) string {
	for _, p := range []string{filepath.Join(ckdir, name), filepath.Join(ckdir, name+".old")} {
		if _, err := os.Stat(filepath.Join(p, stateFile)); err == nil {
			return p
		}
	}
	return ""
}

// completeSteps lists the names (step-N) of the complete checkpoints in
// ckdir, in step order.
func completeSteps(ckdir string) ([]string, error) {
	entries, err := os.ReadDir(ckdir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".old")
		if e.IsDir() && stepFolder.MatchString(name) && !slices.Contains(names, name) && completeCheckpoint(ckdir, name) != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// stepFolder is the name of a checkpoint folder; a folder moved aside by
// hand (step-N.damaged) or one being written (.tmp) is not one.
var stepFolder = regexp.MustCompile(`^step-[0-9]+$`)

// damaged adds to the error of a checkpoint that cannot be read the way
// out: the checkpoint before it, if the run has one.
func damaged(dir, ckpt string, err error) error {
	ckdir := filepath.Join(dir, checkpointDir)
	names, _ := completeSteps(ckdir)
	prev := ""
	for _, n := range names {
		if n < strings.TrimSuffix(filepath.Base(ckpt), ".old") {
			prev = completeCheckpoint(ckdir, n)
		}
	}
	if prev == "" {
		return err
	}
	return fmt.Errorf("%w; the checkpoint before it, %s, is there: move the damaged one aside (mv %s %s.damaged) and resume again",
		err, prev, ckpt, ckpt)
}

// RepairCheckpoints puts back the step folders of run dir that a crash left
// moved aside. Only the holder of the run lock may call it.
func RepairCheckpoints(dir string) {
	restoreAside(filepath.Join(dir, checkpointDir))
}

// restoreAside puts back a step folder that install moved aside when a
// crash left no folder in its place.
func restoreAside(ckdir string) {
	olds, _ := filepath.Glob(filepath.Join(ckdir, "step-*.old"))
	for _, old := range olds {
		final := strings.TrimSuffix(old, ".old")
		if _, err := os.Stat(filepath.Join(final, stateFile)); err == nil {
			os.RemoveAll(old) // the new folder made it
		} else if os.Rename(old, final) == nil {
			syncDir(ckdir)
		}
	}
}

// clearPendingEval rewrites checkpoint ckpt's state.json, atomically,
// without its pending evaluation.
func clearPendingEval(ckpt string) error {
	st, err := ReadState(ckpt)
	if err != nil {
		return err
	}
	st.PendingEval = false
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(ckpt, stateFile), b, 0o644); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// ReadState reads the state.json of checkpoint folder ckpt.
func ReadState(ckpt string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(ckpt, stateFile))
	if err != nil {
		return st, fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("checkpoint %s: corrupt %s: %v", ckpt, stateFile, err)
	}
	return st, nil
}

// ReadModelConfig returns the model configuration stored in a checkpoint's
// weights.
func ReadModelConfig(ckpt string) (model.Config, error) {
	path := filepath.Join(ckpt, modelFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return model.Config{}, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	c, err := model.ParseJSON([]byte(f.Metadata()["config"]))
	if err != nil {
		return model.Config{}, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return c, nil
}

// LoadWeights loads the weights of checkpoint folder ckpt into m (built
// from the checkpoint's config), on m's device.
func LoadWeights(ckpt string, m *model.Model) error {
	return loadWeightsFile(filepath.Join(ckpt, modelFile), m)
}

// loadWeightsFile loads a safetensors file of weights into m; errors name
// the file.
func loadWeightsFile(path string, m *model.Model) error {
	s := torch.NewScope()
	defer s.Close()
	w, _, err := torch.LoadSafetensors(path, m.Options().Device)
	if err != nil {
		return err
	}
	if err := m.LoadState(w); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// LoadCheckpoint restores weights, optimizer state and generator states
// from checkpoint folder ckpt into m and opt (built from the same config).
func LoadCheckpoint(ckpt string, m *model.Model, opt optim.Optimizer, devs []torch.Device) (State, error) {
	st, err := ReadState(ckpt)
	if err != nil {
		return st, err
	}
	s := torch.NewScope()
	defer s.Close()
	if err := LoadWeights(ckpt, m); err != nil {
		return st, fmt.Errorf("checkpoint: %w", err)
	}
	optPath := filepath.Join(ckpt, optimFile)
	f, err := safetensors.Open(optPath)
	if err != nil {
		return st, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	if fl := f.Metadata()["flavour"]; fl != opt.Name() {
		return st, fmt.Errorf("checkpoint %s: optimizer %s, the run uses %s", optPath, fl, opt.Name())
	}
	dev := m.Options().Device
	get := func(name string) (*torch.Tensor, error) { return torch.TensorFromFile(f, name, dev) }
	if err := opt.LoadState(get, f.Metadata()); err != nil {
		return st, fmt.Errorf("checkpoint %s: %w", optPath, err)
	}
	for _, d := range devs {
		rng, err := torch.TensorFromFile(f, "rng."+d.String(), torch.CPU)
		if err != nil {
			return st, fmt.Errorf("checkpoint %s: %w", optPath, err)
		}
		if err := torch.SetRNGState(d, rng); err != nil {
			return st, fmt.Errorf("checkpoint %s: %w", optPath, err)
		}
	}
	return st, nil
}
