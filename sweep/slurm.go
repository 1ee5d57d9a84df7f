package sweep

import (
	"fmt"
	"strconv"
	"strings"
)

// SlurmJob is what SlurmScript needs besides the sweep.
type SlurmJob struct {
	// WorkDir is the folder the tasks run in (paths are relative to it).
	WorkDir string
	// Script is the launcher of one clm process per Slurm task
	// (scripts/slurm-clm.sh), SweepArg the sweep file as given.
	Script, SweepArg string
	// Args are flags every task passes on (-folder DIR, -set key=value).
	Args []string
	// Finished names the points that need no task.
	Finished map[string]bool
}

// SlurmScript is an sbatch script of an array job with one task per point
// that has not finished (the array index is the point's index): each task
// runs `clm sweep SWEEP -point INDEX` through the Slurm launcher, which
// checks the sweep folder's record, exits at once for a finished point and
// continues an interrupted one. It is an error when every point finished.
func SlurmScript(s *Sweep, points []Point, job SlurmJob) (string, error) {
	var todo []int
	for _, p := range points {
		if !job.Finished[p.Name] {
			todo = append(todo, p.Index)
		}
	}
	if len(todo) == 0 {
		return "", fmt.Errorf("%s: every point has finished: nothing to submit (clm sweep -summary %s)", s.Path, job.SweepArg)
	}
	name := folderName(strings.TrimSuffix(lastPart(s.Folder), "/"))
	var b strings.Builder
	fmt.Fprintf(&b, "#!/usr/bin/env bash\n")
	fmt.Fprintf(&b, "#SBATCH --job-name=sweep-%s\n", name)
	fmt.Fprintf(&b, "#SBATCH --array=%s\n", ranges(todo))
	fmt.Fprintf(&b, "#SBATCH --output=slurm-sweep-%s-%%A_%%a.out\n", name)
	fmt.Fprintf(&b, "# clm sweep -slurm %s: one array task per point of %s, written for\n", job.SweepArg, s.Folder)
	fmt.Fprintf(&b, "# sbatch (add the cluster's options: sbatch -p PART --gpus-per-task=1 --time=…;\n")
	fmt.Fprintf(&b, "# --ntasks=N trains a point data-parallel). A finished point exits at once,\n")
	fmt.Fprintf(&b, "# an interrupted one continues from its checkpoint: resubmit to go on.\n")
	for _, p := range points {
		note := ""
		if job.Finished[p.Name] {
			note = "  (finished)"
		}
		fmt.Fprintf(&b, "#   %3d  %s%s\n", p.Index, p.Name, note)
	}
	fmt.Fprintf(&b, "set -euo pipefail\ncd %s\n", shellQuote(job.WorkDir))
	args := []string{"srun", shellQuote(job.Script), "sweep", shellQuote(job.SweepArg), "-point", `"$SLURM_ARRAY_TASK_ID"`}
	for _, a := range job.Args {
		args = append(args, shellQuote(a))
	}
	fmt.Fprintf(&b, "exec %s\n", strings.Join(args, " "))
	return b.String(), nil
}

func lastPart(path string) string {
	path = strings.TrimRight(path, "/")
	return path[strings.LastIndex(path, "/")+1:]
}

// ranges writes sorted indices as Slurm's array list: "0-3,5,7-8".
func ranges(idx []int) string {
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(idx[i]))
		} else {
			parts = append(parts, strconv.Itoa(idx[i])+"-"+strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
