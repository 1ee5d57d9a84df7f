package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"clm/internal/testkit/pyref"
)

// scheduleVariants are the schedules of schedule.go with the parameters
// that change their shape: polynomial with power 1 (the default), above 1
// and below 1, and lr_end 0, 1e-7 (the default) and a large one.
var scheduleVariants = []struct {
	name, schedule string
	power, lrEnd   float64
}{
	{"linear", "linear", 1, 1e-7},
	{"cosine", "cosine", 1, 1e-7},
	{"constant", "constant", 1, 1e-7},
	{"constant_with_warmup", "constant_with_warmup", 1, 1e-7},
	{"polynomial", "polynomial", 1, 1e-7},
	{"polynomial-p2", "polynomial", 2, 1e-4},
	{"polynomial-p0.5-end0", "polynomial", 0.5, 0},
	{"polynomial-p3-end-half", "polynomial", 3, 1.5e-3},
}

// scheduleLengths are (total steps, warmup ratio) edge cases: the default
// ratio, no warmup, warmup = total (ratios just below 1, the validated
// maximum), a single step with and without warmup, a ceil that rounds up,
// and a warmup of one step.
var scheduleLengths = []struct {
	total int
	ratio float64
}{
	{100, 0.05}, {100, 0}, {10, 0.95}, {50, 0.999}, {1, 0.05}, {1, 0}, {7, 0.3}, {40, 0.01}, {2, 0.5},
}

// scheduleJob is one schedule_ref.py job.
type scheduleJob struct {
	Schedule    string  `json:"schedule"`
	LR          float64 `json:"lr"`
	LREnd       float64 `json:"lr_end"`
	Power       float64 `json:"power"`
	WarmupRatio float64 `json:"warmup_ratio"`
	Total       int     `json:"total"`
	Steps       int     `json:"steps"`
}

// scheduleResult is schedule_ref.py's answer to one job.
type scheduleResult struct {
	Warmup int        `json:"warmup"`
	LRs    []*float64 `json:"lrs"`
	Error  *string    `json:"error"`
}

// TestScheduleReference compares Options.LRAt and WarmupSteps, at every
// step from 0 to total+1, with the learning rates that
// transformers.get_scheduler's scheduler gives a torch AdamW (HF Trainer's
// create_scheduler, through scripts/reference/schedule_ref.py), for every
// schedule variant and length. Steps ≥ total, which training never takes,
// are compared too where Hugging Face defines them.
func TestScheduleReference(t *testing.T) {
	pyref.Require(t)
	covered := map[string]bool{}
	for _, v := range scheduleVariants {
		covered[v.schedule] = true
	}
	for name := range schedules {
		if !covered[string(name)] {
			t.Errorf("schedule %q has no reference case", name)
		}
	}
	const lr = 3e-3
	var opts []Options
	var jobs []scheduleJob
	for _, v := range scheduleVariants {
		for _, l := range scheduleLengths {
			opts = append(opts, Options{LR: lr, Schedule: Schedule(v.schedule), Power: v.power, LREnd: v.lrEnd, WarmupRatio: l.ratio})
			jobs = append(jobs, scheduleJob{v.schedule, lr, v.lrEnd, v.power, l.ratio, l.total, l.total + 2})
		}
	}
	results := parseScheduleResults(t, pyref.RunJobs(t, "schedule_ref.py", jobs), len(jobs))
	compared := 0
	for i, job := range jobs {
		v := scheduleVariants[i/len(scheduleLengths)]
		name := fmt.Sprintf("%s/total%d-warmup%g", v.name, job.Total, job.WarmupRatio)
		t.Run(name, func(t *testing.T) { compared += compareSchedule(t, &opts[i], job, results[i]) })
	}
	t.Logf("%d cases (%d schedule variants × %d lengths), %d learning rates compared",
		len(jobs), len(scheduleVariants), len(scheduleLengths), compared)
}

// parseScheduleResults reads schedule_ref.py's JSON lines, one per job.
func parseScheduleResults(t *testing.T, out []byte, n int) []scheduleResult {
	t.Helper()
	var res []scheduleResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r scheduleResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("schedule_ref.py: %v in %q", err, sc.Text())
		}
		res = append(res, r)
	}
	if len(res) != n {
		t.Fatalf("schedule_ref.py answered %d jobs of %d", len(res), n)
	}
	return res
}

// scheduleTol is the largest difference allowed between Go's and Hugging
// Face's learning rate: both compute lr·λ(s) in float64 with the same
// operations, so only libm's cos and pow may differ, by an ulp or two of λ
// (≤ 1), i.e. ~2.2e-16·lr each; 1e-14·lr leaves room for a few of them
// and is far below any formula change (a step's change of lr is ≥ 1e-5·lr
// in these cases).
const scheduleTol = 1e-14

// compareSchedule checks one case and returns how many steps it compared.
func compareSchedule(t *testing.T, o *Options, job scheduleJob, ref scheduleResult) int {
	t.Helper()
	if w := WarmupSteps(job.Total, job.WarmupRatio); w != ref.Warmup {
		t.Errorf("warmup %d steps, Hugging Face %d", w, ref.Warmup)
	}
	if len(ref.LRs) != job.Steps {
		t.Fatalf("reference gave %d learning rates, want %d", len(ref.LRs), job.Steps)
	}
	n := 0
	for s, want := range ref.LRs {
		if want == nil {
			if s < job.Total {
				t.Errorf("step %d of %d: Hugging Face fails (%v) on a step that training takes", s, job.Total, ref.Error)
			}
			continue
		}
		got := o.LRAt(s, job.Total)
		if !(math.Abs(got-*want) <= scheduleTol*job.LR) {
			t.Errorf("step %d of %d (warmup %d): lr %.17g, Hugging Face %.17g", s, job.Total, ref.Warmup, got, *want)
		}
		n++
	}
	return n
}
