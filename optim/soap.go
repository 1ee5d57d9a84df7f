package optim

import (
	"errors"
	"fmt"
	"math"
	"math/big"

	"clm/torch"
)

// SOAPOptions are SOAP's settings besides each group's learning rate and
// weight decay (torch.ParamGroup). DefaultSOAPOptions returns the defaults
// of pytorch_optimizer.SOAP 4.1.0, whose update SOAP reproduces.
type SOAPOptions struct {
	// Beta1 and Beta2 are Adam's moment decays, each in [0, 1).
	Beta1, Beta2 float64
	// ShampooBeta is the decay of the preconditioner statistics (≥ 0);
	// nil means Beta2.
	ShampooBeta *float64
	// PreconditionFrequency is the number of steps between eigenbasis
	// refreshes (one power iteration and a QR decomposition); > 0.
	PreconditionFrequency int
	// MaxPreconditionDim is the largest dimension given a preconditioner;
	// larger ones keep the identity. > 0.
	MaxPreconditionDim int
	// MergeDims (merging small dimensions before preconditioning) is not
	// supported: NewSOAP refuses true.
	MergeDims bool
	// Precondition1D preconditions 1-D parameters too (else they take Adam
	// updates).
	Precondition1D bool
	// CorrectBias applies Adam's bias correction to the step size.
	CorrectBias bool
	// NormalizeGradient divides every update by its RMS (plus Eps).
	NormalizeGradient bool
	// Eps is added to the square root of the second moment (≥ 0).
	Eps float64
}

// DefaultSOAPOptions returns pytorch_optimizer's defaults: betas (0.95,
// 0.95), shampoo_beta beta2, preconditioning every 10 steps, dimensions up
// to 10000, 1-D parameters not preconditioned, bias correction on, no
// gradient normalisation, eps 1e-8.
func DefaultSOAPOptions() SOAPOptions {
	return SOAPOptions{Beta1: 0.95, Beta2: 0.95, PreconditionFrequency: 10, MaxPreconditionDim: 10000,
		CorrectBias: true, Eps: 1e-8}
}

// validate refuses what pytorch_optimizer refuses, NaNs, and MergeDims.
func (o SOAPOptions) validate() error {
	switch {
	case !(o.Beta1 >= 0 && o.Beta1 < 1):
		return fmt.Errorf("soap: beta1 %g must lie in [0, 1)", o.Beta1)
	case !(o.Beta2 >= 0 && o.Beta2 < 1):
		return fmt.Errorf("soap: beta2 %g must lie in [0, 1)", o.Beta2)
	case o.ShampooBeta != nil && !(*o.ShampooBeta >= 0):
		return fmt.Errorf("soap: shampoo_beta %g must not be negative", *o.ShampooBeta)
	case o.PreconditionFrequency <= 0:
		return fmt.Errorf("soap: precondition_frequency %d must be positive", o.PreconditionFrequency)
	case o.MaxPreconditionDim <= 0:
		return fmt.Errorf("soap: max_precondition_dim %d must be positive", o.MaxPreconditionDim)
	case !(o.Eps >= 0):
		return fmt.Errorf("soap: eps %g must not be negative", o.Eps)
	case o.MergeDims:
		return errors.New("soap: merge_dims is not supported")
	}
	return nil
}

// SOAP is Shampoo's preconditioner with Adam run in its eigenbasis (Vyas et
// al. 2024), step for step pytorch_optimizer.SOAP 4.1.0 without merge_dims
// and maximize. Each parameter keeps Adam's moments and, per dimension of at
// most MaxPreconditionDim, a statistic GG (an exponential average of the
// gradient's Gram matrix over the other dimensions) and its eigenbasis Q.
// A group's first step only gathers GG and computes Q with eigh; every
// PreconditionFrequency steps Q is refreshed by one power iteration and a QR
// decomposition. Weight decay is decoupled: p ← p·(1 − lr·wd) after the
// update.
//
// It runs pytorch_optimizer's op sequence with the same libtorch ops, down
// to tensordot's reshapes, lerp_, the column-major layout of Q and a
// correctly rounded β^t, so that on the CPU its parameters equal the
// reference's bit for bit. That matters: directions in which GG is still
// singular (a k×n gradient with k < n on the first steps) get eigenvectors
// and second moments made of rounding noise, and their updates follow it.
//
// Its tensors are allocated by NewSOAP, outside any torch.Scope when NewSOAP
// is called outside one (as parameters are), and freed by Close; Step and
// LoadState only write into them.
type SOAP struct {
	opts        SOAPOptions
	shampooBeta float64
	groups      []*soapGroup
}

// soapGroup is one parameter group and its step count.
type soapGroup struct {
	lr, wd float64
	step   int64
	params []*soapParam
}

// soapParam is one parameter's state. started turns true at the first step
// on which the parameter has a gradient (pytorch_optimizer creates its
// state then).
type soapParam struct {
	p                *torch.Tensor
	started          bool
	expAvg, expAvgSq *torch.Tensor
	gg, q            []*torch.Tensor // one per factor; nil: the identity
}

var _ Optimizer = (*SOAP)(nil)

// NewSOAP builds SOAP over groups with options o. The parameters stay owned
// by the caller. Call it outside any torch.Scope.
func NewSOAP(groups []torch.ParamGroup, o SOAPOptions) (*SOAP, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &SOAP{opts: o, shampooBeta: o.Beta2}
	if o.ShampooBeta != nil {
		s.shampooBeta = *o.ShampooBeta
	}
	for gi, g := range groups {
		if !(g.LR >= 0) {
			return nil, fmt.Errorf("soap: group %d: learning rate %g must not be negative", gi, g.LR)
		}
		if !(g.WeightDecay >= 0) {
			return nil, fmt.Errorf("soap: group %d: weight decay %g must not be negative", gi, g.WeightDecay)
		}
		for i, p := range g.Params {
			if p.Freed() {
				return nil, fmt.Errorf("soap: group %d parameter %d is nil or freed", gi, i)
			}
			if !p.DType().IsFloat() {
				return nil, fmt.Errorf("soap: group %d parameter %d is %v, not floating point", gi, i, p.DType())
			}
		}
	}
	err := torch.Try(func() {
		for _, g := range groups {
			sg := &soapGroup{lr: g.LR, wd: g.WeightDecay}
			s.groups = append(s.groups, sg)
			for _, p := range g.Params {
				sp := &soapParam{p: p}
				sg.params = append(sg.params, sp) // before allocating: Close frees what a failure leaves
				s.allocate(sp)
			}
		}
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("soap: %w", err)
	}
	return s, nil
}

// factorSizes returns, per factor of a parameter of shape, the size of its
// preconditioner, 0 for the identity: one factor per dimension (none for a
// scalar), one for a 1-D parameter only with Precondition1D.
func (o SOAPOptions) factorSizes(shape []int64) []int64 {
	limit := int64(o.MaxPreconditionDim)
	if len(shape) == 1 {
		if !o.Precondition1D || shape[0] > limit {
			return []int64{0}
		}
		return []int64{shape[0]}
	}
	out := make([]int64, len(shape))
	for i, n := range shape {
		if n <= limit {
			out[i] = n
		}
	}
	return out
}

// allocate makes sp's state, zero, on its parameter's device and dtype.
func (o *SOAP) allocate(sp *soapParam) {
	shape, dt, dev := sp.p.Shape(), sp.p.DType(), sp.p.Device()
	sp.expAvg = torch.Zeros(shape, dt, dev)
	sp.expAvgSq = torch.Zeros(shape, dt, dev)
	for _, n := range o.opts.factorSizes(shape) {
		if n == 0 {
			sp.gg, sp.q = append(sp.gg, nil), append(sp.q, nil)
			continue
		}
		sp.gg = append(sp.gg, torch.Zeros([]int64{n, n}, dt, dev))
		sp.q = append(sp.q, nil) // GG freed by Close if the next line fails
		sp.q[len(sp.q)-1] = columnMajor(n, dt, dev)
	}
}

// columnMajor returns a zero n×n matrix stored column by column, the
// layout in which libtorch's eigh and QR return Q and pytorch_optimizer
// keeps it: matrix products read it transposed, and their rounding
// depends on that.
func columnMajor(n int64, dt torch.DType, dev torch.Device) *torch.Tensor {
	rows := torch.Zeros([]int64{n, n}, dt, dev)
	defer rows.Free() // the view keeps the storage
	return rows.T()
}

// tensors returns sp's state tensors with their field names.
func (sp *soapParam) tensors() []torch.Named {
	out := []torch.Named{{Name: "exp_avg", Tensor: sp.expAvg}, {Name: "exp_avg_sq", Tensor: sp.expAvgSq}}
	for d := range sp.gg {
		if sp.gg[d] != nil {
			out = append(out, torch.Named{Name: fmt.Sprintf("GG.%d", d), Tensor: sp.gg[d]},
				torch.Named{Name: fmt.Sprintf("Q.%d", d), Tensor: sp.q[d]})
		}
	}
	return out
}

// Name is "soap".
func (o *SOAP) Name() string { return "soap" }

// SetLR sets the learning rate of every group.
func (o *SOAP) SetLR(lr float64) {
	for _, g := range o.groups {
		g.lr = lr
	}
}

// ZeroGrad drops the gradients of every parameter (set to none).
func (o *SOAP) ZeroGrad() {
	for _, g := range o.groups {
		for _, sp := range g.params {
			sp.p.ZeroGrad()
		}
	}
}

// Close frees the optimizer's state; it is safe to call more than once.
func (o *SOAP) Close() {
	for _, g := range o.groups {
		for _, sp := range g.params {
			sp.expAvg.Free()
			sp.expAvgSq.Free()
			for d := range sp.gg {
				sp.gg[d].Free()
				sp.q[d].Free()
			}
		}
	}
	o.groups = nil
}

// Step applies one SOAP update to every parameter that has a gradient,
// with gradient recording off. Its temporaries live in a scope of its own.
// It raises *torch.Error on failure (call it inside torch.Try).
func (o *SOAP) Step() {
	torch.NoGrad(func() {
		s := torch.NewScope()
		defer s.Close()
		for _, g := range o.groups {
			o.stepGroup(g)
		}
	})
}

// stepGroup is one step of group g: state for parameters seen for the first
// time, then (from the group's second step on) the updates.
func (o *SOAP) stepGroup(g *soapGroup) {
	grads := make([]*torch.Tensor, len(g.params))
	for i, sp := range g.params {
		grads[i] = sp.p.Grad()
		if grads[i] != nil && !sp.started {
			o.start(sp, grads[i], g.step)
		}
	}
	g.step++
	if g.step == 1 {
		return
	}
	step := g.step - 1
	stepSize := g.lr
	if o.opts.CorrectBias {
		bc1 := 1 - powInt(o.opts.Beta1, step)
		bc2 := math.Sqrt(1 - powInt(o.opts.Beta2, step))
		stepSize *= bc2 / bc1
	}
	for i, sp := range g.params {
		if grads[i] != nil {
			o.update(sp, grads[i], g, stepSize, step)
		}
	}
}

// powInt returns x^n (n ≥ 0) correctly rounded, as the C library's pow
// (which Python's math.pow calls) gives it in practice; Go's math.Pow
// rounds at every squaring and can be an ulp off.
func powInt(x float64, n int64) float64 {
	const prec = 256
	r := new(big.Float).SetPrec(prec).SetFloat64(1)
	b := new(big.Float).SetPrec(prec).SetFloat64(x)
	for ; n > 0; n >>= 1 {
		if n&1 == 1 {
			r.Mul(r, b)
		}
		b.Mul(b, b)
	}
	f, _ := r.Float64()
	return f
}

// start begins sp's state from its first gradient: GG from it, Q from GG's
// eigenvectors, and a refresh if step falls on one.
func (o *SOAP) start(sp *soapParam, grad *torch.Tensor, step int64) {
	sp.started = true
	o.accumulate(sp, grad)
	for d, m := range sp.gg {
		if m != nil {
			sp.q[d].CopyFrom(eigenbasis(m))
		}
	}
	if step > 0 && step%int64(o.opts.PreconditionFrequency) == 0 {
		o.refresh(sp)
	}
}

// update is Adam in the eigenbasis for one parameter, then decoupled weight
// decay and the preconditioner's update (step is the group's step − 1).
func (o *SOAP) update(sp *soapParam, grad *torch.Tensor, g *soapGroup, stepSize float64, step int64) {
	projected := project(grad, sp.q, false)
	lerpInPlace(sp.expAvg, grad, 1-o.opts.Beta1)
	lerpInPlace(sp.expAvgSq, projected.Square(), 1-o.opts.Beta2)
	denom := sp.expAvgSq.Sqrt().AddScalar(o.opts.Eps)
	u := project(project(sp.expAvg, sp.q, false).Div(denom), sp.q, true)
	if o.opts.NormalizeGradient {
		u = u.Div(u.Square().Mean(false).Sqrt().AddScalar(o.opts.Eps))
	}
	sp.p.AddInPlace(u, -stepSize)
	if g.wd != 0 {
		sp.p.ScaleInPlace(1 - g.wd*g.lr)
	}
	o.accumulate(sp, grad)
	if step > 0 && step%int64(o.opts.PreconditionFrequency) == 0 {
		o.refresh(sp)
	}
}

// accumulate moves each GG towards the gradient's Gram matrix over the
// other dimensions (g gᵀ for a 1-D parameter) by 1 − shampoo_beta.
func (o *SOAP) accumulate(sp *soapParam, grad *torch.Tensor) {
	w := 1 - o.shampooBeta
	if grad.Dim() == 1 {
		if sp.gg[0] != nil {
			lerpInPlace(sp.gg[0], grad.Unsqueeze(1).Matmul(grad.Unsqueeze(0)), w)
		}
		return
	}
	for d, m := range sp.gg {
		if m == nil {
			continue
		}
		others := make([]int, 0, grad.Dim()-1)
		for i := 0; i < grad.Dim(); i++ {
			if i != d {
				others = append(others, i)
			}
		}
		lerpInPlace(m, tensordot(grad, grad, others, others), w)
	}
}

// refresh replaces each Q by one power iteration on GG, its columns sorted
// by the estimated eigenvalues (descending) and orthonormalised by QR in
// float32, and permutes exp_avg_sq along that dimension to match.
func (o *SOAP) refresh(sp *soapParam) {
	v := sp.expAvgSq
	next := make([]*torch.Tensor, len(sp.gg))
	for d, m := range sp.gg {
		if m == nil {
			continue
		}
		q := sp.q[d]
		mq := m.Matmul(q)
		_, order := q.Mul(mq).Sum(false, 0).Sort(0, true)
		v = v.IndexSelect(d, order)
		next[d], _ = mq.IndexSelect(1, order).ToDType(torch.Float32).QR()
		next[d] = next[d].ToDType(m.DType())
	}
	if v != sp.expAvgSq {
		sp.expAvgSq.CopyFrom(v)
	}
	for d, q := range next {
		if q != nil {
			sp.q[d].CopyFrom(q)
		}
	}
}

// eigenbasis returns the eigenvectors of the symmetric m + 1e-30·I, by
// descending eigenvalue; when eigh fails it retries in float64.
func eigenbasis(m *torch.Tensor) *torch.Tensor {
	n, dt, dev := m.Size(0), m.DType(), m.Device()
	var vecs *torch.Tensor
	err := torch.Try(func() { _, vecs = m.Add(torch.Eye(n, n, dt, dev).MulScalar(1e-30)).Eigh() })
	if err != nil {
		m64 := m.ToDType(torch.Float64).Add(torch.Eye(n, n, torch.Float64, dev).MulScalar(1e-30))
		_, vecs = m64.Eigh()
		vecs = vecs.ToDType(dt)
	}
	reverse := torch.Arange(float64(n-1), -1, -1, torch.Int64, dev)
	return vecs.IndexSelect(1, reverse)
}

// project multiplies every dimension of x by its Q, contracting x's
// leading dimension with Q's rows (into the eigenbasis) or columns (back);
// the identity factors only rotate the dimensions, as tensordot leaves them.
func project(x *torch.Tensor, qs []*torch.Tensor, back bool) *torch.Tensor {
	qd := 0
	if back {
		qd = 1
	}
	for _, q := range qs {
		if q == nil {
			perm := make([]int64, 0, x.Dim())
			for i := 1; i < x.Dim(); i++ {
				perm = append(perm, int64(i))
			}
			x = x.Permute(append(perm, 0)...)
			continue
		}
		x = tensordot(x, q, []int{0}, []int{qd})
	}
	return x
}

// tensordot contracts dimensions da of a with db of b in ATen's way (the
// same permutes, reshapes and one mm), so that its rounding is torch's.
func tensordot(a, b *torch.Tensor, da, db []int) *torch.Tensor {
	as, bs := a.Shape(), b.Shape()
	csize := int64(1)
	for i := range da {
		switch {
		case bs[db[i]] == 1:
			a = a.Sum(true, da[i])
		case as[da[i]] == 1:
			b = b.Sum(true, db[i])
		default:
			csize *= as[da[i]]
		}
	}
	var p1, p2, sizes []int64
	size1, size2 := int64(1), int64(1)
	for i, n := range as {
		if !contains(da, i) {
			p1, size1, sizes = append(p1, int64(i)), size1*n, append(sizes, n)
		}
	}
	for _, d := range da {
		p1 = append(p1, int64(d))
	}
	for _, d := range db {
		p2 = append(p2, int64(d))
	}
	for i, n := range bs {
		if !contains(db, i) {
			p2, size2, sizes = append(p2, int64(i)), size2*n, append(sizes, n)
		}
	}
	t1 := a.Permute(p1...).Reshape(size1, csize)
	t2 := b.Permute(p2...).Reshape(csize, size2)
	return t1.Matmul(t2).Reshape(sizes...)
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// lerpInPlace sets t ← t + w·(end − t) (torch's lerp_ with a scalar
// weight, whose rounding the parity with pytorch_optimizer needs).
func lerpInPlace(t, end *torch.Tensor, w float64) { t.LerpInPlace(end, w) }
