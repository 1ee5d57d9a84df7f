package train

import (
	"fmt"
	"time"

	"clm/torch"
)

// Cost before commitment: a run says what it will train before its first
// step, and after its first few steps how long the whole run will take at
// that pace, so that a paper-size run on a CPU is not discovered a day later.

// estimateAfter is the number of timed steps the estimate waits for.
const estimateAfter = 3

// longOnCPU is the estimate beyond which a CPU run says how to shorten it.
const longOnCPU = 3 * time.Hour

// costMeter times the first steps of a run (wall time, evaluations left
// out) and the last evaluation.
type costMeter struct {
	start     time.Time
	from      int
	evalTime  time.Duration // the last evaluation
	evalSpent time.Duration // evaluations since start
	told      bool
}

// begin starts timing at the run's current step.
func (c *costMeter) begin(step int) {
	c.start, c.from, c.evalSpent = time.Now(), step, 0
}

// evaluated records an evaluation's duration.
func (c *costMeter) evaluated(d time.Duration) {
	c.evalTime = d
	c.evalSpent += d
}

// due reports whether the estimate is to be told after this step: after
// estimateAfter steps, or after the first when it took half a minute.
func (c *costMeter) due(step, total int) bool {
	slow := step > c.from && time.Since(c.start)-c.evalSpent > 30*time.Second
	return !c.told && (step-c.from >= estimateAfter || step == total || slow)
}

// estimate is the line after the first steps (the device synced by the
// caller, so that the clock holds their work).
func (t *Trainer) estimate() string {
	c := &t.cost
	c.told = true
	steps := t.st.Step - c.from
	perStep := (time.Since(c.start) - c.evalSpent) / time.Duration(max(steps, 1))
	left := t.st.TotalSteps - t.st.Step
	evals := 0
	if every := t.exp.Train.EvalEvery; t.valid != nil {
		evals = t.st.TotalSteps/every - t.st.Step/every
		if t.st.TotalSteps%every != 0 {
			evals++ // the last step evaluates too
		}
	}
	return estimateLine(perStep, left, evals, c.evalTime, t.eng.dev)
}

// plan is the line before the first step.
func (t *Trainer) plan() string {
	tr := &t.exp.Train
	cfg := t.eng.m.Config()
	tokensPerStep := tr.MicroBatch * tr.Accumulation * cfg.ContextLength
	total, _ := cfg.ParamCount()
	left := t.st.TotalSteps - t.st.Step
	return fmt.Sprintf("plan: %d steps of %s tokens (%d × %d sequences of %d), %s tokens to go; %s parameters on %v",
		left, count(int64(tokensPerStep)), tr.MicroBatch, tr.Accumulation, cfg.ContextLength,
		count(int64(left)*int64(tokensPerStep)), count(total), t.eng.dev)
}

// estimateLine says how long the rest of a run takes: left steps at
// perStep, and evals evaluations at evalTime each.
func estimateLine(perStep time.Duration, left, evals int, evalTime time.Duration, dev torch.Device) string {
	rest := perStep*time.Duration(left) + evalTime*time.Duration(evals)
	line := fmt.Sprintf("estimate: %s a step, about %s for the %d steps left", roundDuration(perStep), roundDuration(rest), left)
	if evals > 0 && evalTime > 0 {
		line += fmt.Sprintf(" (%d evaluations of %s included)", evals, roundDuration(evalTime))
	}
	if !dev.IsCUDA() && rest > longOnCPU {
		line += fmt.Sprintf("; that is long for a CPU: train on a GPU (train.device = \"cuda\"), or shrink the run: " +
			"fewer steps (train.max_steps), a smaller model (model.n_layer, model.n_embd) or less data (data.num_token_mult)")
	}
	return line
}

// roundDuration writes a duration to the precision that matters:
// "952 h (39.7 days)", "5h12m", "4m10s", "12.3s", "806ms".
func roundDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.0f h (%.1f days)", d.Hours(), d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Millisecond).String()
}

// count writes a count with a unit: 1.33M, 4.1k, 512.
func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
