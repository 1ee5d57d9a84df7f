package safetensors

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"clm/internal/testkit/pyref"
)

// pyDescription is the output of scripts/reference/safetensors_check.py.
type pyDescription struct {
	Metadata map[string]string `json:"metadata"`
	Tensors  map[string]struct {
		DType DType   `json:"dtype"`
		Shape []int64 `json:"shape"`
		Hex   string  `json:"hex"`
	} `json:"tensors"`
	NumpyChecked    int  `json:"numpy_checked"`
	ResaveIdentical bool `json:"resave_identical"`
}

func runReference(t *testing.T, cmd, path string) pyDescription {
	t.Helper()
	out := pyref.Run(t, "safetensors_check.py", cmd, path)
	var d pyDescription
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("reference output: %v\n%s", err, out)
	}
	return d
}

// TestPythonWritesGoReads reads a file written by safetensors.torch (with
// metadata, every common dtype, a scalar and empty tensors), and checks that
// re-encoding it in Go lays it out as Python did.
func TestPythonWritesGoReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "py.safetensors")
	d := runReference(t, "write", path)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !reflect.DeepEqual(f.Metadata(), d.Metadata) {
		t.Errorf("metadata = %q, Python %q", f.Metadata(), d.Metadata)
	}
	if f.Len() != len(d.Tensors) {
		t.Errorf("%d tensors, Python %d", f.Len(), len(d.Tensors))
	}
	var tensors []Tensor
	for name, want := range d.Tensors {
		got, err := f.Tensor(name)
		if err != nil {
			t.Error(err)
			continue
		}
		if got.DType != want.DType || !reflect.DeepEqual(got.Shape, want.Shape) || hex.EncodeToString(got.Data) != want.Hex {
			t.Errorf("%s: Go %s %v %x, Python %s %v %s", name, got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Hex)
		}
		tensors = append(tensors, got)
	}
	t.Logf("read %d tensors and %d metadata keys written by Python", f.Len(), len(f.Metadata()))

	// Go writes the same layout: same size, offsets and data.
	var buf bytes.Buffer
	if err := Encode(&buf, tensors, f.Metadata()); err != nil {
		t.Fatal(err)
	}
	g, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != int64(len(f.data)) || g.start != f.start || !bytes.Equal(g.data[g.start:], f.data[f.start:]) {
		t.Errorf("Go encoding (%d bytes, data at %d) differs from Python's (%d bytes, data at %d)", buf.Len(), g.start, len(f.data), f.start)
	}
	for _, name := range f.Names() {
		a, _ := f.Info(name)
		b, _ := g.Info(name)
		if a.Begin != b.Begin || a.End != b.End {
			t.Errorf("%s: Go offsets [%d, %d], Python [%d, %d]", name, b.Begin, b.End, a.Begin, a.End)
		}
	}
}

// TestGoWritesPythonReads writes a file in Go and reads it with
// safetensors.torch and safetensors.numpy.
func TestGoWritesPythonReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "go.safetensors")
	tensors := testTensors()
	meta := map[string]string{"format": "pt", "note": `ünïcode & <tags> "quoted"` + "\n", "step": "42"}
	if err := Write(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	d := runReference(t, "read", path)
	if !reflect.DeepEqual(d.Metadata, meta) {
		t.Errorf("Python metadata = %q, want %q", d.Metadata, meta)
	}
	if len(d.Tensors) != len(tensors) {
		t.Errorf("Python read %d tensors, want %d", len(d.Tensors), len(tensors))
	}
	for _, w := range tensors {
		got, ok := d.Tensors[w.Name]
		if !ok {
			t.Errorf("Python did not read %q", w.Name)
			continue
		}
		if got.DType != w.DType || !reflect.DeepEqual(got.Shape, w.Shape) || got.Hex != hex.EncodeToString(w.Data) {
			t.Errorf("%s: Python %s %v %s, want %s %v %x", w.Name, got.DType, got.Shape, got.Hex, w.DType, w.Shape, w.Data)
		}
	}
	if !d.ResaveIdentical {
		t.Error("safetensors.torch.save of the same tensors differs from the Go file")
	}
	t.Logf("Python read %d tensors (%d also with numpy); re-saved identically: %v", len(d.Tensors), d.NumpyChecked, d.ResaveIdentical)
}
