package main

// The container checks of `make docker-check` (scripts/docker-check.sh builds
// the images, then runs these with CLM_IMAGE_CPU and CLM_IMAGE_CUDA naming
// them). Without those variables they skip: `make test` needs no docker.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"clm/internal/version"
	"clm/runlog"
	"clm/torch"
	"clm/train"
)

// image returns the image named by the environment variable, or skips.
func image(t *testing.T, env string) string {
	t.Helper()
	img := os.Getenv(env)
	if img == "" {
		t.Skipf("container check: %s names no image (make docker-check sets it)", env)
	}
	return img
}

func dockerBin() string {
	if d := os.Getenv("DOCKER"); d != "" {
		return d
	}
	return "docker"
}

// docker runs the docker client and returns stdout, stderr and the exit code.
func docker(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(dockerBin(), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout.String(), stderr.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// hostVolumes is a host folder with runs/ and cache/ for /work/runs and
// /work/cache, owned by the user the containers run as: this user, or an
// arbitrary one (4321:4321) when the tests run as root.
type hostVolumes struct {
	dir, runs, cache string
	uid, gid         int
}

func newHostVolumes(t *testing.T) hostVolumes {
	t.Helper()
	dir := t.TempDir()
	v := hostVolumes{dir: dir, runs: filepath.Join(dir, "runs"), cache: filepath.Join(dir, "cache"), uid: os.Getuid(), gid: os.Getgid()}
	if v.uid == 0 {
		v.uid, v.gid = 4321, 4321
	}
	for _, d := range []string{dir, v.runs, v.cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	v.chown(t)
	return v
}

// chown gives the volumes to the containers' user (a no-op unless root).
func (v hostVolumes) chown(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	filepath.WalkDir(v.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = os.Lchown(p, v.uid, v.gid)
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
}

// args are docker run's options for a container of this user with the
// volumes mounted and a read-only image: a write outside the volumes fails.
func (v hostVolumes) args() []string {
	return []string{"--read-only", "--user", fmt.Sprintf("%d:%d", v.uid, v.gid),
		"-v", v.runs + ":/work/runs", "-v", v.cache + ":/work/cache"}
}

// checkOwned: every file under the volumes belongs to the containers' user.
func (v hostVolumes) checkOwned(t *testing.T) {
	t.Helper()
	n := 0
	filepath.WalkDir(v.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, err := d.Info()
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != v.uid || int(st.Gid) != v.gid {
			t.Errorf("%s is owned by %d:%d, not the container's user %d:%d", p, st.Uid, st.Gid, v.uid, v.gid)
		}
		n++
		return nil
	})
	t.Logf("%d files and folders, all owned by %d:%d", n, v.uid, v.gid)
}

// tinyArgs is experiments/tiny.toml (inside the image) for a few steps.
func tinyArgs(steps, every int, runDir string) []string {
	return []string{"-config", "experiments/tiny.toml", "-set", fmt.Sprintf("train.max_steps=%d", steps),
		"-set", fmt.Sprintf("train.eval_every=%d", every), "-set", fmt.Sprintf("train.save_every=%d", every),
		"-set", "train.log_every=1", "-set", "train.threads=1", "-run-dir", runDir}
}

// imageVersion runs `clm version -json` in the image.
func imageVersion(t *testing.T, img string) (version.Info, torch.Report) {
	t.Helper()
	out, stderr, code := docker(t, "run", "--rm", img, "version", "-json")
	var v struct {
		Clm   version.Info `json:"clm"`
		Torch torch.Report `json:"libtorch"`
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("%s: clm version -json: exit %d, %v\n%s%s", img, code, err, out, stderr)
	}
	return v.Clm, v.Torch
}

// checkLabels: the image's OCI labels and `clm version` name the commit
// being checked (CLM_IMAGE_COMMIT) and clm's release.
func checkLabels(t *testing.T, img string, v version.Info) {
	t.Helper()
	out, _, code := docker(t, "image", "inspect", "-f", "{{json .Config.Labels}}", img)
	var labels map[string]string
	if err := json.Unmarshal([]byte(out), &labels); code != 0 || err != nil {
		t.Fatalf("inspect %s: exit %d, %v: %s", img, code, err, out)
	}
	if got := labels["org.opencontainers.image.version"]; got != version.Release || v.Release != version.Release {
		t.Errorf("%s: label version %q, clm version %q; want %q", img, got, v.Release, version.Release)
	}
	if want := os.Getenv("CLM_IMAGE_COMMIT"); want != "" {
		if got := labels["org.opencontainers.image.revision"]; got != want || v.Commit != want {
			t.Errorf("%s: label revision %q, clm version commit %q; want %q", img, got, v.Commit, want)
		}
	}
}

// TestImageCPU: the CPU image starts, trains as any user with host folders,
// draws its figures, survives `docker stop`, and meets the paper experiment
// without a Hub and with a Hub cache from the host.
func TestImageCPU(t *testing.T) {
	img := image(t, "CLM_IMAGE_CPU")
	v := newHostVolumes(t)

	t.Run("version", func(t *testing.T) {
		info, r := imageVersion(t, img)
		if r.Torch != torch.Version() || r.CUDABuild || len(r.Devices) != 0 {
			t.Errorf("the CPU image runs libtorch %s (cuda build %v, devices %v); the tests run %s on a CPU build",
				r.Torch, r.CUDABuild, r.Devices, torch.Version())
		}
		checkLabels(t, img, info)
	})

	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{nil, {"-h"}, {"help"}} {
			out, stderr, code := docker(t, append([]string{"run", "--rm", img}, args...)...)
			if code != 0 || !strings.Contains(out+stderr, "usage: clm") {
				t.Errorf("docker run %s %v: exit %d\n%s%s", img, args, code, out, stderr)
			}
		}
	})

	t.Run("tiny run as a user, then plot", func(t *testing.T) {
		out, stderr, code := docker(t, append(append(append([]string{"run", "--rm"}, v.args()...), img), tinyArgs(4, 2, "runs/tiny")...)...)
		if code != 0 || !strings.Contains(out, "done: 4 steps") {
			t.Fatalf("tiny run: exit %d\n%s%s", code, out, stderr)
		}
		run := filepath.Join(v.runs, "tiny")
		for _, f := range []string{"config.toml", "metrics.jsonl", "checkpoints/step-00000004/model.safetensors",
			"checkpoints/step-00000004/optimizer.safetensors", "checkpoints/step-00000004/state.json"} {
			if _, err := os.Stat(filepath.Join(run, f)); err != nil {
				t.Errorf("the run folder on the host lacks %s", f)
			}
		}
		recs, err := readMetrics(filepath.Join(run, "metrics.jsonl"))
		if err != nil || len(recs.Eval) != 3 {
			t.Errorf("metrics.jsonl: %d eval records (%v), want 3 (steps 0, 2, 4)", len(recs.Eval), err)
		}
		out, stderr, code = docker(t, append(append(append([]string{"run", "--rm"}, v.args()...), img), "plot", "-out", "runs/tiny/figures", "runs/tiny")...)
		if code != 0 {
			t.Fatalf("plot: exit %d\n%s%s", code, out, stderr)
		}
		if _, err := os.Stat(filepath.Join(run, "figures", "loss.png")); err != nil {
			t.Errorf("plot drew no loss.png: %v\n%s", err, out)
		}
		v.checkOwned(t)
	})

	t.Run("docker stop, then resume in a new container", func(t *testing.T) {
		const steps = 30
		base := append(append([]string{"run", "--rm"}, v.args()...), img)
		if out, stderr, code := docker(t, append(base, tinyArgs(steps, 10, "runs/straight")...)...); code != 0 {
			t.Fatalf("uninterrupted run: exit %d\n%s%s", code, out, stderr)
		}
		want := weights(t, train.CheckpointPath(filepath.Join(v.runs, "straight"), steps))

		name := fmt.Sprintf("clm-stop-%d", time.Now().UnixNano())
		run := append(append([]string{"run", "-d", "--name", name}, v.args()...), img)
		if out, stderr, code := docker(t, append(run, tinyArgs(steps, 10, "runs/stopped")...)...); code != 0 {
			t.Fatalf("docker run -d: exit %d\n%s%s", code, out, stderr)
		}
		defer docker(t, "rm", "-f", name)
		waitForStep(t, filepath.Join(v.runs, "stopped", "metrics.jsonl"), 3)
		if _, stderr, code := docker(t, "stop", "-t", "120", name); code != 0 {
			t.Fatalf("docker stop: exit %d: %s", code, stderr)
		}
		exit, _, _ := docker(t, "wait", name)
		logs, logErr, _ := docker(t, "logs", name)
		if strings.TrimSpace(exit) != "130" || !strings.Contains(logs+logErr, "saving a checkpoint") {
			t.Errorf("after docker stop: exit %s, want 130 and a checkpoint message\n%s%s", strings.TrimSpace(exit), logs, logErr)
		}
		st, err := train.ReadState(mustLatest(t, filepath.Join(v.runs, "stopped")))
		if err != nil || st.Step >= steps {
			t.Fatalf("stopped at step %d (%v): the run should have been cut short", st.Step, err)
		}
		if out, stderr, code := docker(t, append(base, "-resume", "runs/stopped")...); code != 0 {
			t.Fatalf("resume: exit %d\n%s%s", code, out, stderr)
		}
		got := weights(t, train.CheckpointPath(filepath.Join(v.runs, "stopped"), steps))
		for k, w := range want {
			if got[k] != w {
				t.Errorf("tensor %s differs from the uninterrupted run", k)
			}
		}
		t.Logf("stopped at step %d, resumed in a new container: %d tensors bit-identical to the uninterrupted run", st.Step, len(want))
		v.checkOwned(t)
	})

	t.Run("paper experiment without the Hub", func(t *testing.T) {
		start := time.Now()
		_, stderr, code := docker(t, append(append([]string{"run", "--rm", "--network", "none"}, v.args()...), img,
			"-config", "experiments/skipless.toml", "-run-dir", "runs/nohub")...)
		took := time.Since(start)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "clm: hub: ") ||
			!strings.Contains(lines[0], "huggingface-course/codeparrot-ds-train") || !strings.Contains(lines[0], "clm data download") {
			t.Errorf("exit %d, want 1 and one line naming the repository and the ways out:\n%s", code, stderr)
		}
		if took > 10*time.Second {
			t.Errorf("took %v to fail", took)
		}
		if _, err := os.Stat(filepath.Join(v.runs, "nohub")); err == nil {
			t.Errorf("a failed start left a run folder")
		}
	})

	t.Run("paper experiment from a host Hub cache, offline", func(t *testing.T) {
		h := newPaperHub(t)
		hf := filepath.Join(v.cache, "huggingface")
		env := []string{"HF_ENDPOINT=" + h.srv.URL, "HF_HOME=" + hf, "HF_HUB_CACHE=" + filepath.Join(hf, "hub"), "HF_TOKEN=", "HF_HUB_OFFLINE=0"}
		if out, stderr, code := hubEnv(t, env, "data", "download"); code != 0 {
			t.Fatalf("clm data download on the host: exit %d\n%s%s", code, out, stderr)
		}
		v.chown(t)
		h.srv.ResetCounts()
		args := append(append([]string{"run", "--rm", "--network", "host", "-e", "HF_HUB_OFFLINE=1", "-e", "HF_ENDPOINT=" + h.srv.URL},
			v.args()...), img)
		args = append(append(args, "-config", "experiments/skipless.toml", "-run-dir", "runs/paper"), paperArgs[2:]...)
		out, stderr, code := docker(t, args...)
		if code != 0 || !strings.Contains(out, "done: 3 steps") {
			t.Fatalf("offline paper run in the container: exit %d\n%s%s", code, out, stderr)
		}
		if n := h.srv.Total(); n != 0 {
			t.Errorf("the offline run made %d requests to the Hub: %v", n, h.srv.Requests())
		}
		v.checkOwned(t)
	})
}

func readMetrics(path string) (*runlog.Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return runlog.Read(f)
}

// waitForStep waits until a run's metrics.jsonl has a training record at or
// past step.
func waitForStep(t *testing.T, metrics string, step int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if recs, err := readMetrics(metrics); err == nil && len(recs.Train) > 0 && recs.Train[len(recs.Train)-1].Step >= int64(step) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s reached no step %d in 3 minutes", metrics, step)
}

// TestImageCUDAWithoutGPU: on a machine without a GPU the CUDA image loads
// libtorch's CUDA libraries, says there is no device and why, refuses
// train.device=cuda in one line, and trains on the CPU.
func TestImageCUDAWithoutGPU(t *testing.T) {
	img := image(t, "CLM_IMAGE_CUDA")
	info, r := imageVersion(t, img)
	checkLabels(t, img, info)
	if r.Torch != torch.Version() || !r.CUDABuild || !r.CUDAKernels || r.CUDARuntime == "" || r.CuDNN == "" {
		t.Errorf("the CUDA image: %+v; want libtorch %s, a CUDA build with clm's kernels, a CUDA runtime and cuDNN", r, torch.Version())
	}
	if len(r.Devices) > 0 {
		t.Skipf("this machine gives containers a GPU: %v", r.Devices)
	}
	out, _, _ := docker(t, "run", "--rm", img, "version")
	if !strings.Contains(out, "devices   CPU only: no NVIDIA driver (in Docker: --gpus all") {
		t.Errorf("clm version does not say why there is no device:\n%s", out)
	}

	v := newHostVolumes(t)
	base := append(append([]string{"run", "--rm"}, v.args()...), img)
	_, stderr, code := docker(t, append(append(base, tinyArgs(2, 2, "runs/cuda")...), "-set", "train.device=cuda")...)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "train.device") || !strings.Contains(lines[0], "CUDA is not available") {
		t.Errorf("train.device=cuda without a GPU: exit %d, want 1 and one line:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(v.runs, "cuda")); err == nil {
		t.Errorf("the refused run left a folder")
	}
	out, stderr, code = docker(t, append(base, tinyArgs(2, 2, "runs/cpu")...)...)
	if code != 0 || !strings.Contains(out, "done: 2 steps") {
		t.Errorf("the CUDA image training on the CPU: exit %d\n%s%s", code, out, stderr)
	}
}
