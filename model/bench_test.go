package model

import (
	"fmt"
	"os"
	"testing"

	"clm/internal/testkit/benchenv"
	"clm/torch"
)

// benchSizes are the sizes of the forward+backward benchmark; the Python
// side (scripts/reference/bench_model.py) uses the same.
var benchSizes = []struct {
	name         string
	layers, d, h int64
	B, T, V      int64
}{
	{"small", 3, 64, 4, 8, 32, 512},
	{"mid", 6, 256, 8, 16, 128, 8192},
}

// BenchmarkForwardBackward is one micro-batch's forward and backward for
// every preset and size (attention per CLM_BENCH_ATTENTION, default auto).
func BenchmarkForwardBackward(b *testing.B) {
	impl, err := ParseAttentionImpl(os.Getenv("CLM_BENCH_ATTENTION"))
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range benchSizes {
		for _, preset := range PresetNames() {
			b.Run(fmt.Sprintf("%s/%s", preset, size.name), func(b *testing.B) {
				benchenv.SetThreads(b, torch.SetNumThreads)
				cfg, err := PresetWith(preset, map[string]any{
					"n_layer": size.layers, "n_embd": size.d, "n_head": size.h,
					"context_length": size.T, "n_positions": size.T, "vocab_size": size.V,
				})
				if err != nil {
					b.Fatal(err)
				}
				m, err := New(cfg, Options{Attention: impl})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				torch.ManualSeed(0)
				if err := m.Init(); err != nil {
					b.Fatal(err)
				}
				ids := randomIDs(size.B, size.T, size.V)
				defer ids.Free()
				step := func() {
					s := torch.NewScope()
					defer s.Close()
					out := m.Forward(ids, ForwardOptions{Labels: ids})
					out.Loss.Backward()
					for _, p := range m.params.list {
						if p.Trainable {
							p.T.ZeroGrad()
						}
					}
				}
				step()
				for b.Loop() {
					step()
				}
			})
		}
	}
}
