package model

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
)

// small returns a preset shrunk for fast tests.
func small(t *testing.T, name string, overrides map[string]any) Config {
	t.Helper()
	o := map[string]any{"n_layer": 3, "n_embd": 32, "n_head": 4, "vocab_size": 97, "n_positions": 32, "context_length": 16}
	for k, v := range overrides {
		o[k] = v
	}
	c, err := PresetWith(name, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPresetsValidate(t *testing.T) {
	for _, p := range Presets {
		c, err := Preset(p.Name)
		if err != nil {
			t.Errorf("preset %s: %v", p.Name, err)
			continue
		}
		if c.HeadDim != 64 || c.NInner != 3072 {
			t.Errorf("preset %s: derived head_dim %d, n_inner %d; want 64, 3072", p.Name, c.HeadDim, c.NInner)
		}
		if p.Source == "" {
			t.Errorf("preset %s has no source", p.Name)
		}
	}
	if _, err := Preset("nope"); err == nil || !strings.Contains(err.Error(), `unknown preset "nope"`) {
		t.Errorf("unknown preset: %v", err)
	}
}

func TestPresetIsACopy(t *testing.T) {
	a, _ := Preset("skipless")
	*a.ValueSkipGain = 7
	a.NLayer = 99
	b, _ := Preset("skipless")
	if *b.ValueSkipGain != 1 || b.NLayer != 12 {
		t.Fatalf("mutating a preset's result changed the table: %v %d", *b.ValueSkipGain, b.NLayer)
	}
}

func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		preset string
		set    func(c *Config)
		want   string
	}{
		{"vocab", "default", func(c *Config) { c.VocabSize = 0 }, "model.vocab_size: 0 must be positive"},
		{"positions", "default", func(c *Config) { c.NPositions = -1 }, "model.n_positions: -1 must be positive"},
		{"context", "default", func(c *Config) { c.ContextLength = 2048 }, "model.context_length: 2048 is longer than n_positions 1024"},
		{"divisible", "default", func(c *Config) { c.NEmbd, c.NHead = 100, 3 }, "model.n_embd: 100 is not divisible by n_head 3"},
		{"heads", "default", func(c *Config) { c.NHead = 0 }, "model.n_head: 0 must be positive"},
		{"layers", "default", func(c *Config) { c.NLayer = -2 }, "model.n_layer: -2 must be positive"},
		{"width", "default", func(c *Config) { c.MLPWidthMult = 0 }, "model.mlp_width_mult: 0 gives an MLP width"},
		{"norm", "default", func(c *Config) { c.NormType = "batchnorm" }, `model.norm_type: unknown value "batchnorm" (want one of "ln", "rmsnorm", "none")`},
		{"position", "default", func(c *Config) { c.NormPosition = "sandwich" }, `model.norm_position: unknown value "sandwich"`},
		{"qknorm", "default", func(c *Config) { c.QKNormType = "ln" }, `model.qk_norm_type: unknown value "ln"`},
		{"dotnorm", "default", func(c *Config) { c.DotNormType = "softcap" }, `model.dot_norm_type: unknown value "softcap"`},
		{"valinit", "default", func(c *Config) { c.ValInitType = "xavier" }, `model.val_init_type: unknown value "xavier"`},
		{"projinit", "default", func(c *Config) { c.ProjInitType = "" }, `model.proj_init_type: unknown value ""`},
		{"activation", "default", func(c *Config) { c.ActivationFunction = "mish" }, `model.activation_function: unknown value "mish"`},
		{"tie-enum", "skipless", func(c *Config) { c.TieValprojInit = "first_block" }, `model.tie_valproj_init: unknown value "first_block"`},
		{"tie-without-skip", "value-skipinit", func(c *Config) { c.TieValprojInit = TieAllBlocks },
			`model.tie_valproj_init: "all_blocks" needs value_skip_gain and proj_skip_gain`},
		{"tie-identity", "skipless", func(c *Config) { c.TieValprojInit = TieLastBlock },
			`model.tie_valproj_init: "last_block" needs a W_init in every layer, but the value or projection of layer 0 is the identity`},
		{"tie-one-layer", "skipless", func(c *Config) {
			c.NLayer, c.ValInitType, c.ProjInitType, c.TieValprojInit = 1, InitOrth, InitOrth, TieLastBlock
		},
			`model.tie_valproj_init: "last_block" has no effect with n_layer 1`},
		{"resid-dropout", "default", func(c *Config) { c.ResidPdrop = 1 }, "model.resid_pdrop: 1 is outside [0, 1)"},
		{"attn-dropout", "default", func(c *Config) { c.AttnPdrop = -0.1 }, "model.attn_pdrop: -0.1 is outside [0, 1)"},
		{"embd-dropout", "default", func(c *Config) { c.EmbdPdrop = math.NaN() }, "model.embd_pdrop: NaN is not a finite number"},
		{"eps", "default", func(c *Config) { c.LayerNormEpsilon = -1e-5 }, "model.layer_norm_epsilon: -1e-05 must not be negative"},
		{"gain-inf", "default", func(c *Config) { c.MLPBlockResidGain = math.Inf(1) }, "model.mlp_block_resid_gain: +Inf is not a finite number"},
		{"optional-gain-nan", "skipless", func(c *Config) { c.ValueSkipGain = F(math.NaN()) }, "model.value_skip_gain: NaN is not a finite number"},
		{"std", "default", func(c *Config) { c.QueryInitStd = F(-1) }, "model.query_init_std: -1 must not be negative"},
		{"init-range", "default", func(c *Config) { c.InitializerRange = -0.02 }, "model.initializer_range: -0.02 must not be negative"},
		{"valproj-std-identity", "skipless", func(c *Config) { c.ValProjInitStd = F(0.02) },
			"model.val_proj_init_std: is set but the value or projection of layer 0 is the identity"},
		{"parallel-attn-skip", "default", func(c *Config) { c.ParallelLayers = true },
			"model.attn_block_skip_gain: 1 has no effect when parallel_layers is true"},
		{"slope", "default", func(c *Config) { c.ActivationFunction, c.LReLUNegSlope = ActGELU, 0.1 },
			`model.lrelu_neg_slope: 0.1 has no effect with activation_function "gelu"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Preset(tc.preset)
			if err != nil {
				t.Fatal(err)
			}
			tc.set(&c)
			err = c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the config; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := Default()
	c.VocabSize, c.NormType = 0, "x"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "model.vocab_size") || !strings.Contains(err.Error(), "model.norm_type") {
		t.Fatalf("want both errors, got %v", err)
	}
}

func TestOverridesFollowLinks(t *testing.T) {
	// Fig. 4 of the original: value_resid_gain=0.2 moves proj_resid_gain too.
	c, err := PresetWith("skipless", map[string]any{"value_resid_gain": 0.2, "first_layer_value_resid_gain": 0.2, "n_layer": int64(18)})
	if err != nil {
		t.Fatal(err)
	}
	if c.ProjResidGain != 0.2 || *c.FirstLayerValueResidGain != 0.2 || c.NLayer != 18 {
		t.Fatalf("got proj_resid_gain %v, first %v, n_layer %d", c.ProjResidGain, *c.FirstLayerValueResidGain, c.NLayer)
	}
	// An explicit override of the linked key wins.
	c, err = PresetWith("skipless", map[string]any{"value_resid_gain": 0.2, "proj_resid_gain": 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if c.ProjResidGain != 0.5 {
		t.Fatalf("proj_resid_gain %v, want 0.5", c.ProjResidGain)
	}
	// Value-SkipInit by overrides equals the preset (nil for null, links).
	c, err = PresetWith("skipless", map[string]any{"value_skip_gain": nil, "proj_skip_gain": nil, "val_init_type": "orth"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Preset("value-skipinit")
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("skipless + Value-SkipInit overrides\n%+v\nwant\n%+v", c, want)
	}
	// op: attn_block_resid_gain follows mlp_block_resid_gain.
	c, err = PresetWith("op", map[string]any{"mlp_block_resid_gain": 0.3})
	if err != nil {
		t.Fatal(err)
	}
	if c.AttnBlockResidGain != 0.3 {
		t.Fatalf("op attn_block_resid_gain %v, want 0.3", c.AttnBlockResidGain)
	}
	for _, bad := range []struct {
		o    map[string]any
		want string
	}{
		{map[string]any{"n_layers": 3}, "model.n_layers: unknown key"},
		{map[string]any{"n_layer": "3"}, "model.n_layer: want int, not string"},
		{map[string]any{"n_layer": 2.5}, "model.n_layer: want int, not number 2.5"},
		{map[string]any{"centre_attn": 1}, "model.centre_attn: want bool, not number"},
	} {
		if _, err := PresetWith("default", bad.o); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("overrides %v: error %v, want %q", bad.o, err, bad.want)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, name := range PresetNames() {
		c, _ := Preset(name)
		b, err := c.JSON()
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, d) {
			t.Errorf("%s: JSON round trip changed the config", name)
		}
	}
	c, _ := Preset("default")
	b, _ := c.JSON()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"value_skip_gain", "tie_valproj_init", "query_init_std"} {
		if v, ok := m[k]; !ok || v != nil {
			t.Errorf("%s: %v (present %v), want null", k, v, ok)
		}
	}
	if _, ok := m["HeadDim"]; ok {
		t.Error("derived fields leak into JSON")
	}
	if _, err := ParseJSON([]byte(`{"n_layer": 3, "bogus": 1}`)); err == nil || !strings.Contains(err.Error(), `unknown field "bogus"`) {
		t.Errorf("unknown key: %v", err)
	}
	d, err := ParseJSON([]byte(`{"n_layer": 3, "tie_valproj_init": "all_blocks", "value_skip_gain": 0}`))
	if err != nil || d.NLayer != 3 || d.TieValprojInit != TieAllBlocks || d.ValueSkipGain == nil || *d.ValueSkipGain != 0 || d.NEmbd != 768 {
		t.Errorf("partial JSON: %+v, %v", d, err)
	}
}

func TestLayerForms(t *testing.T) {
	c := small(t, "skipless", nil)
	if v := c.ValueLayer(0); v.Form != LinearReparam || v.ResidGain != 1 || v.SkipGain != 1 || !v.TrainableGains || v.ScaleOnly {
		t.Errorf("skipless layer-0 value: %+v", v)
	}
	if v := c.ValueLayer(1); v.Form != LinearIdentity {
		t.Errorf("skipless layer-1 value: %+v", v)
	}
	if p := c.ProjLayer(2); p.Form != LinearIdentity {
		t.Errorf("skipless projection: %+v", p)
	}
	c = small(t, "skipless", map[string]any{"value_skip_gain": 0.5, "last_layer_proj_resid_gain": 0.3})
	if v := c.ValueLayer(1); v.Form != LinearReparam || !v.ScaleOnly || v.SkipGain != 0.5 {
		t.Errorf("scale-only value: %+v", v)
	}
	if p := c.ProjLayer(2); p.Form != LinearReparam || p.ResidGain != 0.3 || p.ScaleOnly {
		t.Errorf("last-layer projection: %+v", p)
	}
	c = small(t, "value-skipinit", nil)
	if v := c.ValueLayer(0); v.Form != LinearPlain || v.Init != InitOrth {
		t.Errorf("value-skipinit value: %+v", v)
	}
	c = small(t, "op", nil)
	if l1, l2 := c.BlockNorms(0); l1 != NormLN || l2 != NormNone {
		t.Errorf("op layer-0 norms %s %s", l1, l2)
	}
	if l1, l2 := c.BlockNorms(1); l1 != NormNone || l2 != NormNone {
		t.Errorf("op layer-1 norms %s %s", l1, l2)
	}
}

// TestParamCounts records the sizes of the paper's 18-layer models
// (width 768, vocabulary 52000, 1024 positions).
func TestParamCounts(t *testing.T) {
	want := map[string][2]int64{
		"default":           {168278736, 168181248},
		"default-parallel":  {168278736, 168181248},
		"skipless":          {147608018, 147538130},
		"skipless-parallel": {147608018, 147538094},
		"op":                {168254928, 168157440},
		"value-skipinit":    {168278736, 168181968},
	}
	for name, w := range want {
		c, err := PresetWith(name, map[string]any{"n_layer": 18})
		if err != nil {
			t.Fatal(err)
		}
		total, trainable := c.ParamCount()
		if total != w[0] || trainable != w[1] {
			t.Errorf("%s: %d params (%d trainable), want %d (%d)", name, total, trainable, w[0], w[1])
		}
	}
}

// referenceVariant is a preset with overrides that TestReferenceAgrees hands
// to the Python reference.
type referenceVariant struct {
	preset string
	o      map[string]any
}

// referenceVariants are every preset plus variants that switch on the other
// value/projection, norm and attention-gain code paths.
func referenceVariants() []referenceVariant {
	var variants []referenceVariant
	for _, n := range PresetNames() {
		variants = append(variants, referenceVariant{n, nil})
	}
	return append(variants,
		referenceVariant{"skipless", map[string]any{"value_skip_gain": 0.5, "val_init_type": "orth", "tie_valproj_init": "last_block", "last_layer_proj_resid_gain": 0.3}},
		referenceVariant{"skipless", map[string]any{"val_init_type": "normal", "tie_valproj_init": "all_blocks", "trainable_value_gains": false}},
		referenceVariant{"default", map[string]any{"norm_type": "ln", "qk_norm_type": "rmsnorm", "mlp_width_mult": 2.5, "trainable_attn_mat_gains": true, "centre_attn_gain": 0}},
		referenceVariant{"skipless-parallel", map[string]any{"norm_type": "none", "norm_position": "post"}},
		// GPT-2's block (a Hugging Face GPT-2 opened as a run), and
		// trainable biases beside Eq. 6's reparameterised layers.
		referenceVariant{"default", map[string]any{"norm_type": "ln", "activation_function": "gelu_new", "trainable_biases": true}},
		referenceVariant{"skipless", map[string]any{"value_skip_gain": 0.5, "val_init_type": "orth", "trainable_biases": true}},
	)
}

// writeVariantConfigs writes each variant's config as dir/<i>.json and
// returns the configs, the JSON written and the paths.
func writeVariantConfigs(t *testing.T, dir string, variants []referenceVariant) (configs []Config, written [][]byte, paths []string) {
	t.Helper()
	configs = make([]Config, len(variants))
	written = make([][]byte, len(variants))
	for i, v := range variants {
		configs[i] = small(t, v.preset, v.o)
		b, err := configs[i].JSON()
		if err != nil {
			t.Fatal(err)
		}
		written[i] = b
		path := filepath.Join(dir, strconv.Itoa(i)+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return configs, written, paths
}

// referenceDescription is one line of `model.py describe`: the config as
// the reference read it, its parameters ([name, shape, trainable]), buffers
// ([name, shape]) and counts.
type referenceDescription struct {
	Config           map[string]any
	Params           [][3]json.RawMessage
	Buffers          [][2]json.RawMessage
	Total, Trainable int64
}

// specs is the description's parameters then buffers, as ParamSpecs.
func (d *referenceDescription) specs(t *testing.T) []ParamSpec {
	t.Helper()
	var got []ParamSpec
	for _, p := range d.Params {
		var s ParamSpec
		mustJSON(t, p[0], &s.Name)
		mustJSON(t, p[1], &s.Shape)
		mustJSON(t, p[2], &s.Trainable)
		got = append(got, s)
	}
	for _, p := range d.Buffers {
		s := ParamSpec{Buffer: true}
		mustJSON(t, p[0], &s.Name)
		mustJSON(t, p[1], &s.Shape)
		got = append(got, s)
	}
	return got
}

// checkReferenceDescription compares the reference's description of
// variant i with the Go config c and the JSON Go wrote for it.
func checkReferenceDescription(t *testing.T, i int, v referenceVariant, c Config, written []byte, d *referenceDescription) {
	t.Helper()
	got, want := d.specs(t), c.Params()
	for i := range want {
		want[i].Role = 0 // the reference has no roles (TestRolesGiveTheOriginalsNameRules checks them)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("variant %d (%s %v): reference parameters differ", i, v.preset, v.o)
		logParamDifferences(t, got, want)
	}
	total, trainable := c.ParamCount()
	if d.Total != total || d.Trainable != trainable {
		t.Errorf("variant %d: reference counts %d/%d, Go %d/%d", i, d.Total, d.Trainable, total, trainable)
	}
	var gm map[string]any
	mustJSON(t, written, &gm)
	if !reflect.DeepEqual(d.Config, gm) {
		t.Errorf("variant %d: the reference read\n%v\nGo wrote\n%v", i, d.Config, gm)
	}
}

// logParamDifferences logs each position where the reference's parameter
// list (got) and Go's (want) differ.
func logParamDifferences(t *testing.T, got, want []ParamSpec) {
	t.Helper()
	for j := 0; j < max(len(got), len(want)); j++ {
		var g, w ParamSpec
		if j < len(got) {
			g = got[j]
		}
		if j < len(want) {
			w = want[j]
		}
		if !reflect.DeepEqual(g, w) {
			t.Logf("  #%d reference %+v, Go %+v", j, g, w)
		}
	}
}

// TestReferenceAgrees hands each preset (and a few variants) to the Python
// reference: the JSON must be read back unchanged, and the reference module
// must have exactly the parameters, shapes, order and trainability of Params.
func TestReferenceAgrees(t *testing.T) {
	variants := referenceVariants()
	configs, written, paths := writeVariantConfigs(t, t.TempDir(), variants)
	out := pyref.Run(t, "model.py", append([]string{"describe"}, paths...)...)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	i := 0
	for ; sc.Scan(); i++ {
		if i >= len(variants) {
			t.Fatalf("reference printed more lines than configs")
		}
		var d referenceDescription
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		checkReferenceDescription(t, i, variants[i], configs[i], written[i], &d)
	}
	if i != len(variants) {
		t.Fatalf("reference described %d of %d configs", i, len(variants))
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// TestReferencePresetsAgree checks that model.py's preset table, and its
// handling of linked overrides, equal Go's.
func TestReferencePresetsAgree(t *testing.T) {
	var all map[string]json.RawMessage
	mustJSON(t, pyref.Run(t, "model.py", "presets"), &all)
	if len(all) != len(Presets) {
		t.Errorf("reference has %d presets, Go %d", len(all), len(Presets))
	}
	for _, name := range PresetNames() {
		raw, ok := all[name]
		if !ok {
			t.Errorf("reference lacks preset %s", name)
			continue
		}
		py, err := ParseJSON(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := py.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		gc, _ := Preset(name)
		if !reflect.DeepEqual(py, gc) {
			a, _ := py.JSON()
			b, _ := gc.JSON()
			t.Errorf("preset %s differs:\nreference %s\nGo %s", name, a, b)
		}
	}
	out := pyref.Run(t, "model.py", "preset", "skipless", "--set", "value_resid_gain=0.2", "--set", `val_init_type="orth"`)
	py, err := ParseJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := py.Validate(); err != nil {
		t.Fatal(err)
	}
	gc, _ := PresetWith("skipless", map[string]any{"value_resid_gain": 0.2, "val_init_type": "orth"})
	if !reflect.DeepEqual(py, gc) {
		t.Errorf("linked overrides differ:\n%+v\n%+v", py, gc)
	}
}

// TestFootprintMatchesParamCount: the O(1) size estimate equals the exact
// count for every preset at several depths, and stays finite for absurd
// ones.
func TestFootprintMatchesParamCount(t *testing.T) {
	for _, name := range PresetNames() {
		for _, layers := range []int{1, 2, 3, 4, 5, 18} {
			c, err := PresetWith(name, map[string]any{"n_layer": layers, "n_embd": 64, "n_head": 4, "vocab_size": 300})
			if err != nil {
				t.Fatal(err)
			}
			total, trainable := c.ParamCount()
			var buffers int64
			for _, p := range c.Params() {
				if p.Buffer {
					n := int64(1)
					for _, s := range p.Shape {
						n *= s
					}
					buffers += n
				}
			}
			tr, fr := c.Footprint()
			if tr != float64(trainable) || fr != float64(total-trainable+buffers) {
				t.Errorf("%s, %d layers: footprint %v trainable + %v frozen, exact %d + %d", name, layers, tr, fr, trainable, total-trainable+buffers)
			}
		}
	}
	c, err := PresetWith("default", map[string]any{"n_layer": 99999999999})
	if err != nil {
		t.Fatal(err)
	}
	if tr, _ := c.Footprint(); !(tr > 1e17) || math.IsInf(tr, 0) {
		t.Errorf("99999999999 layers: %v trainable parameters", tr)
	}
}
