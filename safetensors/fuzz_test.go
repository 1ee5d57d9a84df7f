package safetensors

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzOpen checks that the reader never panics or reads out of bounds, and
// that whatever it accepts survives a round trip through Encode. It fuzzes
// Parse, the validation behind Open, on in-memory data.
func FuzzOpen(f *testing.F) {
	var buf bytes.Buffer
	Encode(&buf, testTensors(), map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	buf.Reset()
	Encode(&buf, nil, nil)
	f.Add(buf.Bytes())
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}}`, 8))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		var tensors []Tensor
		for _, name := range file.Names() {
			tn, err := file.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := file.Info(name)
			if int64(len(tn.Data)) != info.NumElements()*int64(info.DType.Size()) {
				t.Fatalf("%q: %d bytes for %s %v", name, len(tn.Data), info.DType, info.Shape)
			}
			tensors = append(tensors, tn)
		}
		var out bytes.Buffer
		if err := Encode(&out, tensors, file.Metadata()); err != nil {
			t.Fatalf("re-encoding an accepted file: %v", err)
		}
		again, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("re-parsing: %v", err)
		}
		if !reflect.DeepEqual(again.Names(), file.Names()) || len(again.Metadata()) != len(file.Metadata()) {
			t.Fatalf("round trip changed names or metadata")
		}
		for _, tn := range tensors {
			got, _ := again.Tensor(tn.Name)
			if got.DType != tn.DType || !reflect.DeepEqual(got.Shape, tn.Shape) || !bytes.Equal(got.Data, tn.Data) {
				t.Fatalf("round trip changed %q", tn.Name)
			}
		}
	})
}
