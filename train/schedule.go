package train

import "math"

// Schedule is train.schedule: the name of one of Hugging Face's
// get_scheduler schedules.
type Schedule string

// Polynomial is the original's schedule (HF's
// get_polynomial_decay_schedule_with_warmup).
const Polynomial Schedule = "polynomial"

// schedules are the learning-rate multipliers of Hugging Face's
// get_scheduler, as functions of the step (0-based, the number of optimizer
// steps taken), the warmup steps and the total steps. The learning rate of
// step s is lr·λ(s), as torch's LambdaLR computes it.
var schedules = map[Schedule]func(s, warmup, total int, o *Options) float64{
	"constant": func(int, int, int, *Options) float64 { return 1 },
	"constant_with_warmup": func(s, w, _ int, _ *Options) float64 {
		if s < w {
			return float64(s) / float64(max(1, w))
		}
		return 1
	},
	"linear": func(s, w, total int, _ *Options) float64 {
		if s < w {
			return float64(s) / float64(max(1, w))
		}
		return math.Max(0, float64(total-s)/float64(max(1, total-w)))
	},
	"cosine": func(s, w, total int, _ *Options) float64 {
		if s < w {
			return float64(s) / float64(max(1, w))
		}
		progress := float64(s-w) / float64(max(1, total-w))
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*0.5*2*progress)))
	},
	// polynomial is get_polynomial_decay_schedule_with_warmup: linear
	// warmup from 0, then (lr − lr_end)·(1 − progress)^power + lr_end,
	// reaching lr_end at step == total.
	Polynomial: func(s, w, total int, o *Options) float64 {
		if s < w {
			return float64(s) / float64(max(1, w))
		}
		if s > total {
			return o.LREnd / o.LR
		}
		pct := 1 - float64(s-w)/float64(total-w)
		return ((o.LR-o.LREnd)*math.Pow(pct, o.Power) + o.LREnd) / o.LR
	},
}

// WarmupSteps is ceil(warmup_ratio · total), as HF's get_warmup_steps.
func WarmupSteps(total int, ratio float64) int { return int(math.Ceil(float64(total) * ratio)) }

// LRAt returns the learning rate of optimizer step s (0-based) of total.
func (o *Options) LRAt(s, total int) float64 {
	return o.LR * schedules[o.Schedule](s, WarmupSteps(total, o.WarmupRatio), total, o)
}
