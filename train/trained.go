package train

import (
	"fmt"
	"os"
	"path/filepath"

	"clm/model"
)

// Trained is a model restored from a checkpoint for inference, with the
// experiment of its run.
type Trained struct {
	Model      *model.Model
	Exp        *Experiment
	Checkpoint string // the checkpoint folder (a model's folder or pinned hub: spec)
	RunDir     string // the run folder it belongs to (a model's folder)

	hf *hfModel // a Hugging Face model, or nil
}

// Config is the path of the run's config.toml, which Exp was read from.
func (t *Trained) Config() string { return RunConfig(t.RunDir) }

// CheckpointName is the checkpoint's path relative to the run folder, e.g.
// "checkpoints/step-100".
func (t *Trained) CheckpointName() string {
	if t.hf != nil {
		return t.Checkpoint
	}
	if rel, err := filepath.Rel(t.RunDir, t.Checkpoint); err == nil {
		return rel
	}
	return t.Checkpoint
}

// OpenTrained loads a checkpoint onto device ("cpu", "cuda" or "cuda:N"):
// path is a run folder (its latest checkpoint), a checkpoint folder, or a
// Hugging Face model (a folder, or "hub:org/name[@revision]") with the
// default experiment (see IsHF).
func OpenTrained(path, device string) (*Trained, error) {
	if IsHF(path) {
		return openTrainedHF(path, device)
	}
	ckpt, runDir := path, path
	if _, err := os.Stat(filepath.Join(path, stateFile)); err == nil {
		runDir = filepath.Dir(filepath.Dir(path)) // RUN/checkpoints/step-N
	} else {
		latest, err := LatestCheckpoint(path)
		if err != nil {
			return nil, err
		}
		if latest == "" {
			return nil, fmt.Errorf("%s has no checkpoint", path)
		}
		ckpt = latest
	}
	exp, err := Load(RunConfig(runDir), nil)
	if err != nil {
		return nil, err
	}
	dev, err := DeviceSetting(device).Resolve()
	if err != nil {
		return nil, err
	}
	cfg, err := ReadModelConfig(ckpt)
	if err != nil {
		return nil, err
	}
	m, err := model.New(cfg, model.Options{Device: dev, FusedKernels: exp.Train.FusedKernels})
	if err != nil {
		return nil, err
	}
	if err := LoadWeights(ckpt, m); err != nil {
		m.Close()
		return nil, err
	}
	return &Trained{Model: m, Exp: exp, Checkpoint: ckpt, RunDir: runDir}, nil
}

// Close frees the model.
func (t *Trained) Close() { t.Model.Close() }
