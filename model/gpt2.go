package model

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"clm/torch"
)

// IgnoreIndex marks label positions that the loss ignores.
const IgnoreIndex = -100

// Options are the runtime choices of a model that are not part of the
// original configuration.
type Options struct {
	// Device holds the parameters (torch.CPU or torch.CUDA(i)).
	Device torch.Device
	// DType of the parameters: Float32 (master weights under autocast) or
	// Float64 (parity tests).
	DType torch.DType
	// Attention selects the shaped-attention implementation.
	Attention AttentionImpl
	// FusedKernels computes the MLP's leaky ReLU, RMSNorm, the residual
	// combinations (and Eq. 6's weight combination) and the
	// shaped-attention epilogue each in one fused operation (package torch's
	// Fused*), equal to the composite ops to rounding, and causal attention
	// by torch.FusedCausalAttention (clm's kernels for float32 on the CPU,
	// SDPA elsewhere); false: the composite ops, op by op as the original
	// writes them, and SDPA.
	FusedKernels bool
}

// Model is a GPT-2 language model (GPT2LMHeadModel) whose blocks are one of
// the paper's variants: embeddings wte + wpe, L blocks, the final LayerNorm
// ln_f, and a head tied to wte.
type Model struct {
	cfg    Config
	opts   Options
	params *Params
	inits  []initStep    // Init's rules, in declaration order
	wte    *torch.Tensor // [V, d]
	wpe    *torch.Tensor // [n_positions, d]
	blocks []block
	lnF    norm
	k      kernels // Options.FusedKernels' choice
}

// pass is what one forward pass gives every layer besides its input: how it
// runs (training: dropout on; the attention implementation and the
// kernels) and what it collects (the attention probabilities, a
// quantiser's view).
type pass struct {
	impl  AttentionImpl
	k     kernels
	train bool
	probs bool      // return the attention probabilities
	quant Quantizer // nil: none
}

// pass is the forward pass o asks of m.
func (m *Model) pass(o ForwardOptions) *pass {
	return &pass{impl: m.opts.Attention, k: m.k, train: o.Train, probs: o.Attention, quant: o.Quant}
}

// New builds a model of cfg with zeroed tensors; call Init (training from
// scratch) or LoadState (checkpoints, reference weights) next. cfg is
// validated first.
func New(cfg Config, opts Options) (*Model, error) {
	cfg = cfg.Clone()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.DType == 0 {
		opts.DType = torch.Float32
	}
	if !opts.DType.IsFloat() {
		return nil, fmt.Errorf("model: parameters must be floating point, not %v", opts.DType)
	}
	if err := torch.CheckDevice(opts.Device); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if err := checkAttention(&cfg, opts.Attention); err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, opts: opts, k: kernelsFor(opts.FusedKernels)}
	s := &store{alloc: true, dtype: opts.DType, dev: opts.Device}
	err := torch.Try(func() { m.declare(s) })
	m.params, m.inits = s.registry(), s.inits
	if err != nil {
		m.params.free()
		return nil, fmt.Errorf("model: allocating parameters on %v: %w", opts.Device, err)
	}
	for _, p := range m.params.Trainable() {
		p.T.SetRequiresGrad(true)
	}
	return m, nil
}

// declare builds the module tree of GPT2LMHeadModel under the root of s:
// transformer.wte, transformer.wpe, the blocks transformer.h.<i> and
// transformer.ln_f (the head is tied to wte and declares nothing).
func (m *Model) declare(s *store) {
	cfg := &m.cfg
	d := int64(cfg.NEmbd)
	tr := s.root().sub("transformer")
	m.wte = tr.sub("wte").param("weight", RoleEmbedding, true, normal(cfg.InitializerRange), int64(cfg.VocabSize), d)
	m.wpe = tr.sub("wpe").param("weight", RolePosition, true, normal(cfg.InitializerRange), int64(cfg.NPositions), d)
	h := tr.sub("h")
	for i := 0; i < cfg.NLayer; i++ {
		m.blocks = append(m.blocks, newBlock(h.sub(strconv.Itoa(i)), cfg, i))
	}
	m.lnF = newNorm(tr.sub("ln_f"), NormLN, d, cfg.LayerNormEpsilon)
}

// Config returns the model's validated configuration.
func (m *Model) Config() Config { return m.cfg.Clone() }

// Options returns the runtime options.
func (m *Model) Options() Options { return m.opts }

// SetAttention switches the shaped-attention implementation; it refuses
// AttentionFused where that would not be exact.
func (m *Model) SetAttention(a AttentionImpl) error {
	if err := checkAttention(&m.cfg, a); err != nil {
		return err
	}
	m.opts.Attention = a
	return nil
}

// Params returns the ordered parameter registry.
func (m *Model) Params() *Params { return m.params }

// Close frees every parameter and buffer.
func (m *Model) Close() {
	if m.params != nil {
		m.params.free()
		m.params = nil
	}
}

// Pad is a padding token whose labels the loss ignores; the zero value is
// none. Token 0 is a token like any other (it is <|endoftext|>, the pad,
// in the original's tokenizer).
type Pad struct {
	id  int64
	set bool
}

// PadToken is the Pad of token id.
func PadToken(id int64) Pad { return Pad{id: id, set: true} }

// ID returns the padding token, and false when there is none.
func (p Pad) ID() (int64, bool) { return p.id, p.set }

// ForwardOptions selects what Forward computes besides the logits.
type ForwardOptions struct {
	// Labels [B, T] (int64): the loss is the mean next-token cross-entropy
	// of logits[:, :-1] against Labels[:, 1:], ignoring IgnoreIndex. Nil: no
	// loss.
	Labels *torch.Tensor
	// Pad also ignores labels equal to the padding token (the original's
	// collator masks the pad id, which is the eos id). The zero value is no
	// padding.
	Pad Pad
	// Train enables dropout.
	Train bool
	// Hidden returns the hidden states (HF output_hidden_states).
	Hidden bool
	// Attention returns the softmax attention probabilities of each layer
	// (forces the materialised path).
	Attention bool
	// LossOnly is the training path: the head computes logits only at the
	// T−1 positions the loss uses, in chunks of rows so that the [B·T, V]
	// logits never exist at once, with their gradient formed in forward
	// (torch.LinearCrossEntropy), and Output.Logits stays nil. The loss
	// equals the plain one up to summation order.
	LossOnly bool
	// LossSegments, when set, splits the batch into consecutive groups of
	// rows and makes the loss Σ Weight·(mean loss of the group's rows)
	// instead of one mean over all rows: a forward over several of the
	// optimizer's micro-batches (or part of one) then yields the sum of their
	// means (see train's micro-batch fitting). Rows must sum to B; a segment
	// of Weight 0 is skipped (its targets may all be ignored).
	LossSegments []LossSegment
	// Quant, when not nil, sees (and may replace) the input and effective
	// weight of every linear layer with a matrix product, and the residual
	// stream after every block: int8 post-training quantisation (package
	// quant). Nil leaves the forward exactly as it is without it.
	Quant Quantizer
}

// Quantizer is ForwardOptions.Quant. Embeddings, norms, softmax and the
// tied head are never shown to it. Each block runs in a scope of its own:
// the tensors a Quantizer is shown or creates are released when their block
// ends, except what Residual returns (the stream that continues), so a
// Quantizer reads what it needs during the call.
type Quantizer interface {
	// Linear receives a layer's input x [N, in] (tokens flattened) and its
	// effective weight w [in, out] — for Eq. 6 layers the combined
	// resid_gain·W_train + skip_gain·W_init — and returns the pair the
	// layer multiplies. name is the layer's path, e.g.
	// "transformer.h.3.attn.qk_attn", "….attn.v_attn", "….attn.c_proj",
	// "….mlp.c_fc" or "….mlp.c_proj".
	Linear(name string, x, w *torch.Tensor) (*torch.Tensor, *torch.Tensor)
	// Residual receives the output h [B, T, d] of block layer (the next
	// block's input, or ln_f's for the last) and returns the stream that
	// continues.
	Residual(layer int, h *torch.Tensor) *torch.Tensor
}

// LossSegment is a group of consecutive rows of a batch and the weight of
// their mean loss (ForwardOptions.LossSegments).
type LossSegment struct {
	Rows   int
	Weight float64
}

// Output is what Forward returns; every tensor belongs to the open scope.
type Output struct {
	// Logits [B, T, V].
	Logits *torch.Tensor
	// Loss is a 0-d tensor, or nil without labels.
	Loss *torch.Tensor
	// Hidden has L+1 entries with Hugging Face semantics: the inputs of
	// blocks 0..L−1 (entry 0 is the embedding output), then ln_f of the last
	// block's output.
	Hidden []*torch.Tensor
	// Attention has the softmax probabilities [B, H, T, T] of each layer,
	// before the Eq. 5 gains.
	Attention []*torch.Tensor
}

// Forward runs the model on input ids [B, T] (int64, on the model's device).
func (m *Model) Forward(ids *torch.Tensor, o ForwardOptions) Output {
	s := ids.Shape()
	if len(s) != 2 || s[1] > int64(m.cfg.NPositions) {
		panic(&torch.Error{Op: "model.forward", Msg: fmt.Sprintf("input ids of shape %v: want [B, T] with T ≤ n_positions %d", s, m.cfg.NPositions)})
	}
	var out Output
	p := m.pass(o)
	x := m.embed(m.wte, ids, o.Train)
	for i := range m.blocks {
		if o.Hidden {
			out.Hidden = append(out.Hidden, x)
		}
		var probs *torch.Tensor
		x, probs = m.block(i, x, p)
		if o.Attention {
			out.Attention = append(out.Attention, probs)
		}
	}
	m.head(x, m.wte, o, &out)
	return out
}

// embed is wte[ids] + wpe[0..T−1] and the embedding dropout: the input of
// block 0. wte is the token embedding to read (the model's own, or a
// detached alias of it when its gradient is collected apart).
func (m *Model) embed(wte, ids *torch.Tensor, train bool) *torch.Tensor {
	pos := torch.Arange(0, float64(ids.Size(1)), 1, torch.Int64, m.opts.Device)
	x := torch.Embedding(wte, ids).Add(torch.Embedding(m.wpe, pos)) // [B, T, d]
	return x.Dropout(m.cfg.EmbdPdrop, train && m.cfg.EmbdPdrop > 0)
}

// block runs block i (and the quantiser's view of its output) in a scope
// of its own that keeps only the output and the probabilities: the
// temporaries autograd did not save are released at once, as eager
// PyTorch releases them.
func (m *Model) block(i int, x *torch.Tensor, p *pass) (y, probs *torch.Tensor) {
	torch.WithScope(func(s *torch.Scope) {
		y, probs = m.blocks[i].forward(p, x)
		if p.quant != nil {
			y = p.quant.Residual(i, y)
		}
		s.Keep(y)
		if probs != nil {
			s.Keep(probs)
		}
	})
	return y, probs
}

// head is ln_f, the tied head x·wteᵀ and the loss, into out: the logits
// (unless LossOnly made them unnecessary), the last hidden state and the
// loss.
func (m *Model) head(x, wte *torch.Tensor, o ForwardOptions, out *Output) {
	s := x.Shape()
	x = m.lnF.forward(m.pass(o), x)
	if o.Hidden {
		out.Hidden = append(out.Hidden, x)
	}
	if o.LossOnly && o.Labels != nil && s[0]*s[1]*int64(m.cfg.VocabSize)*4 >= plainHeadBelow {
		// Memory-lean head: never holds the [B·T, V] logits at once.
		out.Loss = segmentedLoss(o, func(a, n int64) *torch.Tensor {
			return chunkedNextTokenLoss(x.Narrow(0, a, n), wte, o.Labels.Narrow(0, a, n), o.Pad)
		})
		return
	}
	out.Logits = x.Matmul(wte.T()) // tied head
	if o.Labels != nil {
		out.Loss = segmentedLoss(o, func(a, n int64) *torch.Tensor {
			return NextTokenLoss(out.Logits.Narrow(0, a, n), o.Labels.Narrow(0, a, n), o.Pad)
		})
	}
}

// segmentedLoss is loss(0, B) without LossSegments, else Σ Weight·loss(a, n)
// over the segments' row ranges [a, a+n).
func segmentedLoss(o ForwardOptions, loss func(a, n int64) *torch.Tensor) *torch.Tensor {
	B := o.Labels.Size(0)
	if len(o.LossSegments) == 0 {
		return loss(0, B)
	}
	var total *torch.Tensor
	a := int64(0)
	for _, seg := range o.LossSegments {
		n := int64(seg.Rows)
		if n <= 0 || a+n > B {
			panic(&torch.Error{Op: "model.forward", Msg: fmt.Sprintf("loss segments %v do not split a batch of %d rows", o.LossSegments, B)})
		}
		if seg.Weight != 0 {
			l := loss(a, n).MulScalar(seg.Weight)
			if total == nil {
				total = l
			} else {
				total = total.Add(l)
			}
		}
		a += n
	}
	if a != B {
		panic(&torch.Error{Op: "model.forward", Msg: fmt.Sprintf("loss segments %v do not split a batch of %d rows", o.LossSegments, B)})
	}
	if total == nil { // every weight 0
		total = torch.Scalar(0, torch.Float32, o.Labels.Device())
	}
	return total
}

// lossChunk is the number of token rows whose logits exist at once in the
// memory-lean loss: 512 × 52000 fp32 logits are 106 MB, 512 × 8192 are
// 16 MB. Against 2048 rows at the mid size (2 threads) it halves the page
// faults of a step (21k instead of 46k: each chunk's logits reuse the
// previous chunk's freed block) and ran 2–18% faster in 4 of 4
// interleaved pairs.
const lossChunk = 512

// plainHeadBelow is the fp32 logits size below which LossOnly takes the
// plain head (x·wteᵀ at every position, then the loss), for the tests that
// hold the two heads to each other. It is 0: the chunked head is the
// faster one at every size measured (mid size, 2 cores: 8% a step; it
// reads and writes the logits fewer times, and its temporaries stay
// within one chunk), and the only one that fits at the paper's (128 × 128
// tokens × 52000 words are 3.4 GB of logits).
var plainHeadBelow int64

// chunkedNextTokenLoss is NextTokenLoss of the tied head x·wteᵀ computed by
// torch.LinearCrossEntropy in chunks of rows.
func chunkedNextTokenLoss(x, wte, labels *torch.Tensor, pad Pad) *torch.Tensor {
	s := x.Shape()
	T, d := s[1], s[2]
	h := x.Narrow(1, 0, T-1).Reshape(-1, d)
	return torch.LinearCrossEntropy(h, wte, nextTokenTargets(labels, pad), IgnoreIndex, lossChunk)
}

// nextTokenTargets is labels[:, 1:] flattened, with the pad token
// replaced by IgnoreIndex: the targets of positions 0..T−2.
func nextTokenTargets(labels *torch.Tensor, pad Pad) *torch.Tensor {
	if id, ok := pad.ID(); ok {
		labels = labels.MaskedFill(labels.EqScalar(float64(id)), IgnoreIndex)
	}
	T := labels.Size(1)
	return labels.Narrow(1, 1, T-1).Reshape(-1)
}

// alignedTargets are the targets of every position 0..T−1, flattened:
// labels[:, 1:] (pad as IgnoreIndex) and IgnoreIndex for the last position,
// which has none.
func alignedTargets(labels *torch.Tensor, pad Pad) *torch.Tensor {
	if id, ok := pad.ID(); ok {
		labels = labels.MaskedFill(labels.EqScalar(float64(id)), IgnoreIndex)
	}
	B, T := labels.Size(0), labels.Size(1)
	last := torch.Full([]int64{B, 1}, IgnoreIndex, labels.DType(), labels.Device())
	return torch.Cat([]*torch.Tensor{labels.Narrow(1, 1, T-1), last}, 1).Reshape(-1)
}

// NextTokenLoss is the mean cross-entropy of logits[:, :-1] [B, T, V]
// against labels[:, 1:], ignoring IgnoreIndex and labels equal to the pad
// token, if any. It takes the logits of all T positions as they are (a
// view, no copy) and ignores the last position's, whose target does not
// exist: the gradient is the one of the slice logits[:, :-1] (zero at the
// last position) without the copy of the slice and the zeroed buffer of its
// backward.
func NextTokenLoss(logits, labels *torch.Tensor, pad Pad) *torch.Tensor {
	V := logits.Size(2)
	return torch.CrossEntropy(logits.Reshape(-1, V), alignedTargets(labels, pad), IgnoreIndex, torch.ReduceMean)
}

// State returns every parameter and buffer by name, in registry order (the
// tensors are the model's own; do not free them).
func (m *Model) State() []torch.Named {
	out := make([]torch.Named, 0, len(m.params.list))
	for _, p := range m.params.list {
		out = append(out, torch.Named{Name: p.Name, Tensor: p.T})
	}
	return out
}

// LoadState copies named tensors into the model's parameters and buffers.
// Names, shapes and dtypes must match exactly; the error lists every
// mismatch (missing, unexpected, wrong shape).
func (m *Model) LoadState(tensors []torch.Named) error {
	have := map[string]*torch.Tensor{}
	for _, n := range tensors {
		have[n.Name] = n.Tensor
	}
	var problems []string
	for _, p := range m.params.list {
		t, ok := have[p.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("missing %s %v", p.Name, p.Shape))
			continue
		}
		if got := t.Shape(); fmt.Sprint(got) != fmt.Sprint(p.Shape) && !(len(p.Shape) == 0 && len(got) == 0) {
			problems = append(problems, fmt.Sprintf("%s: shape %v, model has %v", p.Name, got, p.Shape))
		}
		if !t.DType().IsFloat() {
			problems = append(problems, fmt.Sprintf("%s: dtype %v is not floating point", p.Name, t.DType()))
		}
		delete(have, p.Name)
	}
	var extra []string
	for name := range have {
		extra = append(extra, name)
	}
	sort.Strings(extra)
	for _, name := range extra {
		problems = append(problems, "unexpected "+name)
	}
	if len(problems) > 0 {
		more := ""
		if len(problems) > 12 {
			more = fmt.Sprintf(" (and %d more)", len(problems)-12)
			problems = problems[:12]
		}
		return fmt.Errorf("weights do not match the model: %s%s", strings.Join(problems, "; "), more)
	}
	byName := map[string]*torch.Tensor{}
	for _, n := range tensors {
		byName[n.Name] = n.Tensor
	}
	return torch.Try(func() {
		for _, p := range m.params.list {
			p.T.CopyFrom(byName[p.Name]) // in place, outside autograd
		}
	})
}
