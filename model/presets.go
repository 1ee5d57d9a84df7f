package model

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Link is one interpolation of the original yaml (`key: ${model.from}`):
// unless Key is overridden itself, it takes the value of From, also after
// From is overridden. For example `model.value_resid_gain=0.2` on the command
// line of the original also sets proj_resid_gain to 0.2 (Fig. 4), and
// `model.val_init_type=orth` also sets proj_init_type (Value-SkipInit).
type Link struct {
	// Key follows From.
	Key, From string
}

// NamedConfig is a preset: a starting point that any key can override.
// Behaviour never depends on the name, only on the fields.
type NamedConfig struct {
	// Name is the original's yaml name (config/model/<name>.yaml), or the
	// experiment's name for presets defined by a command line.
	Name string
	// Source says where the preset comes from in the papers and the code.
	Source string
	// Config is the resolved configuration (links applied).
	Config Config
	// Links are the yaml interpolations that overrides follow.
	Links []Link
}

// defaultLinks are the interpolations of config/model/default.yaml, inherited
// by every preset.
var defaultLinks = []Link{
	{Key: "proj_resid_gain", From: "value_resid_gain"},
	{Key: "centre_attn_gain", From: "attn_mat_resid_gain"},
	{Key: "proj_init_type", From: "val_init_type"},
}

// Default is the original's default.yaml: a 12-layer Pre-LN GPT-2 with
// RMSNorm, ReLU MLP, no dropout, width 768, context 128, vocabulary 52000.
// The paper's runs use n_layer 18.
func Default() Config {
	return Config{
		VocabSize:     52000,
		NPositions:    1024,
		ContextLength: 128,
		NEmbd:         768,
		NLayer:        12,
		NHead:         12,
		MLPWidthMult:  4,

		NormType:         NormRMS,
		NormPosition:     NormPre,
		QKNormType:       QKNormNone,
		DotNormType:      DotNormNone,
		LayerNormEpsilon: 1e-5,

		AttnBlockResidGain: 1,
		AttnBlockSkipGain:  1,
		MLPBlockResidGain:  1,
		MLPBlockSkipGain:   1,

		AttnMatResidGain: 1,
		AttnMatSkipGain:  0,
		CentreAttn:       false,
		CentreAttnGain:   1,

		ValueResidGain: 1,
		ProjResidGain:  1,

		InitializerRange: 0.02,
		ValInitType:      InitNormal,
		ProjInitType:     InitNormal,
		TieValprojInit:   TieNone,

		ActivationFunction: ActLeakyReLU,
		LReLUNegSlope:      0,
	}
}

// skipless is config/model/skipless.yaml: no attention skip, shaped
// attention (Eq. 5) with W^Q = 0, identity values and projections except a
// trainable value in layer 0 (Eq. 6), all gains trainable.
func skipless() Config {
	c := Default()
	c.AttnBlockSkipGain = 0
	c.MLPBlockResidGain = 0.1 // O(1/√depth) in the yaml's comment
	c.AttnMatSkipGain = 1
	c.ValueResidGain = 0
	c.ValueSkipGain = F(1)
	c.FirstLayerValueResidGain = F(1)
	c.ProjResidGain = 0
	c.ProjSkipGain = F(1)
	c.CentreAttn = true
	c.CentreAttnGain = 1
	c.TrainableAttnBlockGains = true
	c.TrainableMLPBlockGains = true
	c.TrainableAttnMatGains = true
	c.TrainableValueGains = true
	c.TrainableProjGains = true
	c.QueryInitStd = F(0)
	c.ValInitType = InitID
	c.ProjInitType = InitID
	return c
}

// Presets are the original's model yamls and the experiment command lines of
// exp_scripts/, resolved. Figure numbers are those of the papers (and of the
// comments in exp_scripts/baseline_comparison.sh).
var Presets = []NamedConfig{
	// Pre-LN baseline: Fig. 2 (eval loss ≈ 1.155 at 18 layers, 40K steps).
	{
		Name:   "default",
		Source: "Pre-LN baseline (RMSNorm), Simplifying Transformer Blocks Fig. 2; config/model/default.yaml",
		Config: Default(),
		Links:  defaultLinks,
	},
	// Parallel Pre-LN (GPT-J) baseline of exp_scripts/baseline_comparison.sh.
	{
		Name:   "default-parallel",
		Source: "Parallel Pre-LN block (GPT-J), the parallel baseline of exp_scripts/baseline_comparison.sh; config/model/default-parallel.yaml",
		Config: func() Config {
			c := Default()
			c.AttnBlockSkipGain = 0
			c.ParallelLayers = true
			return c
		}(),
		Links: defaultLinks,
	},
	// SAS: shaped attention (Eq. 5), identity V/P (Eq. 6); Figs. 3 and 9.
	{
		Name:   "skipless",
		Source: "SAS, skip- and value/projection-less block (Eqs. 5-6), Figs. 3 and 9; config/model/skipless.yaml",
		Config: skipless(),
		Links:  defaultLinks,
	},
	// SAS-P: Figs. 5 and 10; with norm_type none ≈ 1.245 eval loss (Fig. 5).
	{
		Name:   "skipless-parallel",
		Source: "SAS-P, parallel skipless block, Figs. 5 and 10 (Fig. 5 also with norm_type none); config/model/skipless-parallel.yaml",
		Config: func() Config {
			c := skipless()
			c.MLPBlockSkipGain = 0
			c.ParallelLayers = true
			return c
		}(),
		Links: defaultLinks,
	},
	// OP block of the outlier-features paper (He et al., NeurIPS 2024).
	{
		Name:   "op",
		Source: "Outlier Protected block (He et al. 2024, arXiv:2405.19279): no norms but a layer-0 LayerNorm, QK-RMSNorm, downweighted residuals; config/model/op.yaml",
		Config: func() Config {
			c := Default()
			c.MLPBlockResidGain = 0.2
			c.AttnBlockResidGain = 0.2
			c.NormType = NormNone
			c.QKNormType = QKNormRMS
			return c
		}(),
		Links: append(append([]Link{}, defaultLinks...), Link{Key: "attn_block_resid_gain", From: "mlp_block_resid_gain"}),
	},
	// Value-SkipInit baseline (exp_scripts/baseline_comparison.sh).
	{
		Name:   "value-skipinit",
		Source: "Value-SkipInit baseline, exp_scripts/baseline_comparison.sh: model=skipless model.value_skip_gain=null model.proj_skip_gain=null model.val_init_type=orth",
		Config: func() Config {
			c := skipless()
			c.ValueSkipGain = nil
			c.ProjSkipGain = nil
			c.ValInitType = InitOrth
			c.ProjInitType = InitOrth // follows val_init_type
			return c
		}(),
		Links: defaultLinks,
	},
}

// PresetNames lists the preset names in table order.
func PresetNames() []string {
	names := make([]string, len(Presets))
	for i, p := range Presets {
		names[i] = p.Name
	}
	return names
}

func lookup(name string) (NamedConfig, error) {
	for _, p := range Presets {
		if p.Name == name {
			return p, nil
		}
	}
	return NamedConfig{}, fmt.Errorf("model: unknown preset %q (have %s)", name, strings.Join(PresetNames(), ", "))
}

// Preset returns a validated copy of the named preset.
func Preset(name string) (Config, error) {
	return PresetWith(name, nil)
}

// PresetWith returns the named preset with overrides applied and validated.
// Overrides are keyed by the original names; values are what a TOML or JSON
// decoder yields (bool, int64/float64, string, nil for null). A key linked
// to an overridden key (see Link) follows it unless it is overridden too.
// Unknown keys and wrong types are errors.
func PresetWith(name string, overrides map[string]any) (Config, error) {
	p, err := lookup(name)
	if err != nil {
		return Config{}, err
	}
	c, err := Override(p.Config, p.Links, overrides)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("preset %q: %w", name, err)
	}
	return c, nil
}

// Override applies overrides to base, following links (see PresetWith). The
// result is not validated.
func Override(base Config, links []Link, overrides map[string]any) (Config, error) {
	if len(overrides) == 0 {
		return base.Clone(), nil
	}
	raw, err := json.Marshal(base)
	if err != nil {
		return Config{}, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return Config{}, err
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return Config{}, fmt.Errorf("model.%s: unknown key", k)
		}
		if f, ok := overrides[k].(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return Config{}, fmt.Errorf("model.%s: %v is not a finite number", k, f)
		}
		m[k] = overrides[k]
	}
	for _, l := range links {
		_, src := overrides[l.From]
		_, dst := overrides[l.Key]
		if src && !dst {
			m[l.Key] = m[l.From]
		}
	}
	raw, err = json.Marshal(m)
	if err != nil {
		return Config{}, err
	}
	var c Config
	if err := decodeStrict(raw, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}
