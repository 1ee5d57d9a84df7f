package configdoc

import (
	"reflect"
	"strings"
	"testing"
)

// Opts mirrors testdata/opts.go (the source Table reads).
type Opts struct {
	Rate   float64         `toml:"rate"`
	Steps  int             `toml:"steps"`
	Sub    bool            `toml:"sub"`
	Hidden string          `toml:"-"`
	Nested struct{ A int } `toml:"nested"`
	Names  []string        `toml:"names"`
}

func TestTable(t *testing.T) {
	got, err := Table("testdata", "Opts", Opts{Rate: 1e-3, Steps: 5, Names: []string{".py"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "| key | default | meaning |\n| --- | --- | --- |\n" +
		"| `rate` | 0.001 | The learning rate \\| the step size. |\n" +
		"| `steps` | 5 | Optimizer steps (0: from epochs) |\n" +
		"| `sub` | false | On a GPU, does it. |\n" +
		"| `names` | [\".py\"] | Filter the files. |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTableRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, typ string
		v         any
		want      string
	}{
		{"unknown type", "Missing", Opts{}, "no struct type Missing"},
		{"defaults of another type", "Opts", struct{ Rate float64 }{}, "not a Opts"},
		{"source field missing from the type", "Opts", older(), "Opts.Steps is in the source but not in the compiled type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Table("testdata", tc.typ, tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// older is an Opts of an older build: its source has fields it lacks.
func older() any {
	type Opts struct {
		Rate float64 `toml:"rate"`
	}
	return Opts{}
}

type named int

func (named) MarshalText() ([]byte, error) { return []byte("auto"), nil }

type nullable string

func (n nullable) MarshalJSON() ([]byte, error) {
	if n == "" {
		return []byte("null"), nil
	}
	return []byte(`"` + n + `"`), nil
}

func TestValue(t *testing.T) {
	f := 0.5
	for _, tc := range []struct {
		v    any
		want string
	}{
		{1e-5, "1e-05"}, {4.0, "4.0"}, {0.02, "0.02"}, {-1.0, "-1.0"}, {12, "12"}, {true, "true"},
		{"rmsnorm", `"rmsnorm"`}, {"", `""`}, {(*float64)(nil), "null"}, {&f, "0.5"},
		{[]string{".py", ".pyi"}, `[".py", ".pyi"]`}, {named(0), `"auto"`}, {nullable(""), "null"},
	} {
		if got := Value(reflect.ValueOf(tc.v)); got != tc.want {
			t.Errorf("Value(%#v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

func TestMeaning(t *testing.T) {
	for _, tc := range []struct{ field, doc, want string }{
		{"NEmbd", "NEmbd is the width d.\n", "The width d."},
		{"Optim", "Optim are the [train.optim] keys.", "The [train.optim] keys."},
		{"CUDAGraphs", "CUDAGraphs, on a GPU,\ncaptures the step.", "On a GPU, captures the step."},
		{"Seed", "Seed seeds the init.", "Seeds the init."},
		{"Steps", "optimizer steps (0: none)", "Optimizer steps (0: none)"},
		{"Island", "Is land.", "Is land."},
		{"X", "a | b", `A \| b`},
	} {
		if got := Meaning(tc.field, tc.doc); got != tc.want {
			t.Errorf("Meaning(%q, %q) = %q, want %q", tc.field, tc.doc, got, tc.want)
		}
	}
}
