package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"clm/internal/version"
	"clm/torch"
)

// StartsFile is the run folder's record of every start: one JSON line per
// start or resume, saying what ran it (clm's version and commit, libtorch,
// the shim, the device and GPUs, the host) and how (the command line), from
// which step.
const StartsFile = "starts.jsonl"

// Start is one line of StartsFile.
type Start struct {
	Time      string       `json:"time"`
	Step      int          `json:"step"` // the step the start continues from (0: a new run)
	Clm       version.Info `json:"clm"`
	Libtorch  string       `json:"libtorch"`
	CUDABuild bool         `json:"cuda_build"`
	Device    string       `json:"device"`
	GPUs      []string     `json:"gpus,omitempty"` // as the CUDA runtime names them
	Threads   int          `json:"threads"`
	CPUMatmul string       `json:"cpu_matmul"` // the engine of float32 CPU products (train.cpu_matmul resolved)
	Host      string       `json:"host"`
	WorldSize int          `json:"world_size"`
	Command   []string     `json:"command"`
}

// recordStart appends this start to the run folder's StartsFile, synced.
func (r *Run) recordStart() error {
	if r.Rank != 0 {
		return nil
	}
	rep, err := torch.ReadReport()
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	s := Start{Time: time.Now().UTC().Format(time.RFC3339), Step: r.Trainer.State().Step, Clm: version.Get(),
		Libtorch: rep.Torch, CUDABuild: rep.CUDABuild, Device: r.Device.String(), GPUs: rep.Devices,
		Threads: torch.NumThreads(), CPUMatmul: torch.CPUMatmulEngine().String(), Host: host, Command: r.opts.Command, WorldSize: r.peers.Size()}
	line, err := json.Marshal(s)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(r.Dir, StartsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("run folder: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("run folder: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("run folder: %w", err)
	}
	return f.Close()
}
