package quant

import (
	"fmt"
	"math"
	"strconv"

	"clm/model"
	"clm/torch"
)

// The int8 grids. Symmetric schemes (weights, dynamic activations) use the
// restricted range [−127, 127] so that the grid is symmetric about 0;
// static activations use the full asymmetric range.
const (
	symMax           = 127
	asymMin, asymMax = -128, 127
	// MinScale is the smallest scale: an all-zero tensor or channel
	// quantises to zeros instead of dividing by zero.
	MinScale = 1e-8
)

// Range is the min–max range an observer saw for one tensor.
type Range struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// Affine returns the asymmetric int8 scale and zero point of r: the range
// is widened to contain 0 (so that 0 is exact), scale = (hi − lo)/255 and
// zero point = −128 − round(lo/scale) (ties to even), clamped to the grid.
func (r Range) Affine() (scale float64, zeroPoint int64) {
	lo, hi := math.Min(r.Min, 0), math.Max(r.Max, 0)
	scale = math.Max((hi-lo)/float64(asymMax-asymMin), MinScale)
	zp := asymMin - math.RoundToEven(lo/scale)
	return scale, int64(math.Max(asymMin, math.Min(asymMax, zp)))
}

// ResidualName is the range key of the residual stream after block layer:
// the block's own path.
func ResidualName(layer int) string { return "transformer.h." + strconv.Itoa(layer) }

// Ranges are static activation ranges by layer path (model.Quantizer's
// names) and ResidualName.
type Ranges map[string]Range

// Quantizer fake-quantises a forward as its Scheme says; it implements
// model.Quantizer. Static activations need the Ranges of Calibrate.
type Quantizer struct {
	scheme Scheme
	ranges Ranges
}

var _ model.Quantizer = (*Quantizer)(nil)

// NewQuantizer returns the quantizer of s; ranges are required (for every
// layer the forward will show it) when s.Acts is static.
func NewQuantizer(s Scheme, ranges Ranges) (*Quantizer, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Acts == ActsStatic && len(ranges) == 0 {
		return nil, fmt.Errorf("quant: static activations need calibrated ranges")
	}
	return &Quantizer{scheme: s, ranges: ranges}, nil
}

// Linear quantises a layer's weight [in, out] and its input [N, in].
func (q *Quantizer) Linear(name string, x, w *torch.Tensor) (*torch.Tensor, *torch.Tensor) {
	return q.acts(name, x), QuantizeWeight(w, q.scheme.Weights)
}

// Residual quantises the stream after block layer when the scheme says so.
func (q *Quantizer) Residual(layer int, h *torch.Tensor) *torch.Tensor {
	if !q.scheme.Residual {
		return h
	}
	s := h.Shape()
	return q.acts(ResidualName(layer), h.Reshape(-1, s[len(s)-1])).View(s...)
}

// acts quantises a 2-D activation [N, d] as the scheme says.
func (q *Quantizer) acts(name string, x *torch.Tensor) *torch.Tensor {
	switch q.scheme.Acts {
	case ActsStatic:
		r, ok := q.ranges[name]
		if !ok {
			panic(&torch.Error{Op: "quant", Msg: "no calibrated range for " + name})
		}
		scale, zp := r.Affine()
		return x.FakeQuantize(scale, zp, asymMin, asymMax)
	case ActsDynamic:
		return PerToken(x)
	}
	return x
}

// QuantizeWeight fake-quantises a weight [in, out] with scheme s.
func QuantizeWeight(w *torch.Tensor, s Weights) *torch.Tensor {
	switch s {
	case WeightsPerTensor:
		scale := math.Max(w.Abs().Amax(false).Item()/symMax, MinScale)
		return w.FakeQuantize(scale, 0, -symMax, symMax)
	case WeightsPerChannel:
		return symmetricAlong(w, 1)
	}
	return w
}

// PerToken is dynamic symmetric int8 of x [N, d], one scale per row (token):
// max_j |x_ij|/127.
func PerToken(x *torch.Tensor) *torch.Tensor { return symmetricAlong(x, 0) }

// symmetricAlong fake-quantises the 2-D t with one symmetric scale per
// slice along axis (absmax/127 over the other axis), zero point 0.
func symmetricAlong(t *torch.Tensor, axis int) *torch.Tensor {
	scale := t.Abs().Amax(false, 1-axis).DivScalar(symMax).ClampMin(MinScale).ToDType(torch.Float32)
	zp := torch.Zeros([]int64{t.Size(axis)}, torch.Int32, t.Device())
	return t.FakeQuantizePerChannel(scale, zp, axis, -symMax, symMax)
}

// observer records the min–max range of every tensor a forward shows it,
// full precision; it implements model.Quantizer.
type observer struct {
	ranges   Ranges
	residual bool
}

func (o *observer) Linear(name string, x, w *torch.Tensor) (*torch.Tensor, *torch.Tensor) {
	o.see(name, x)
	return x, w
}

func (o *observer) Residual(layer int, h *torch.Tensor) *torch.Tensor {
	if o.residual {
		o.see(ResidualName(layer), h)
	}
	return h
}

// see widens the range of name by t's extremes (one host transfer).
func (o *observer) see(name string, t *torch.Tensor) {
	v := torch.Stack([]*torch.Tensor{t.Amax(false), t.Neg().Amax(false)}, 0).ToDType(torch.Float64).ToDevice(torch.CPU).Float64s()
	hi, lo := v[0], -v[1]
	if r, ok := o.ranges[name]; ok {
		lo, hi = math.Min(lo, r.Min), math.Max(hi, r.Max)
	}
	o.ranges[name] = Range{Min: lo, Max: hi}
}
