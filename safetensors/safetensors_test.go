package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testTensors covers every dtype, a scalar and empty tensors.
func testTensors() []Tensor {
	return []Tensor{
		NewTensor("f32", []int64{2, 3}, []float32{0, 1.5, -2, float32(math.Inf(1)), math.MaxFloat32, 1e-30}),
		NewTensor("f64", []int64{2}, []float64{math.Pi, math.Copysign(0, -1)}), // a negative zero
		NewTensor("i64", []int64{3}, []int64{math.MinInt64, -1, math.MaxInt64}),
		NewTensor("u64", []int64{1}, []uint64{math.MaxUint64}),
		NewTensor("i32", []int64{1, 2}, []int32{-5, 5}),
		NewTensor("u32", []int64{1}, []uint32{7}),
		NewTensor("i16", []int64{2}, []int16{-300, 300}),
		NewTensor("u16", []int64{1}, []uint16{65535}),
		NewTensor("i8", []int64{3}, []int8{-128, 0, 127}),
		NewTensor("u8", []int64{3}, []uint8{0, 1, 255}),
		NewTensor("bool", []int64{3}, []bool{true, false, true}),
		{Name: "bf16", DType: BF16, Shape: []int64{2}, Data: []byte{0x80, 0x3f, 0x00, 0xc0}},
		{Name: "f16", DType: F16, Shape: []int64{1}, Data: []byte{0x00, 0x3c}},
		{Name: "f8", DType: F8E4M3, Shape: []int64{2}, Data: []byte{0x38, 0xb8}},
		{Name: "c64", DType: C64, Shape: []int64{1}, Data: ToBytes([]float32{1, -1})},
		NewTensor("scalar", []int64{}, []float32{3.25}),
		NewTensor("empty", []int64{0, 4}, []float32{}),
		NewTensor("empty_i64", []int64{3, 0}, []int64(nil)),
		NewTensor("layer.0.weight", []int64{2, 2}, []float32{1, 2, 3, 4}),
	}
}

func checkFile(t *testing.T, f *File, want []Tensor, meta map[string]string) {
	t.Helper()
	if got := f.Metadata(); !reflect.DeepEqual(got, meta) && (len(got) != 0 || len(meta) != 0) {
		t.Errorf("Metadata() = %v, want %v", got, meta)
	}
	if f.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", f.Len(), len(want))
	}
	names := f.Names()
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("Names() not sorted: %q", names)
		}
	}
	for _, w := range want {
		got, err := f.Tensor(w.Name)
		if err != nil {
			t.Errorf("Tensor(%q): %v", w.Name, err)
			continue
		}
		if got.DType != w.DType || !reflect.DeepEqual(got.Shape, w.Shape) || !bytes.Equal(got.Data, w.Data) {
			t.Errorf("Tensor(%q) = %s %v %x, want %s %v %x", w.Name, got.DType, got.Shape, got.Data, w.DType, w.Shape, w.Data)
		}
		info, _ := f.Info(w.Name)
		if abs := f.start + info.Begin; abs%int64(info.DType.Size()) != 0 {
			t.Errorf("tensor %q at file offset %d, not aligned to %d", w.Name, abs, info.DType.Size())
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, meta := range []map[string]string{nil, {"format": "pt", "note": `<&> "ü"` + "\n\x01"}} {
		path := filepath.Join(t.TempDir(), "x.safetensors")
		tensors := testTensors()
		if err := Write(path, tensors, meta); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, f, tensors, meta)
		checkNegativeZero(t, f)
		if f.start%8 != 0 {
			t.Errorf("data section starts at %d, not a multiple of 8", f.start)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Bytes("f32"); err == nil {
			t.Error("Bytes after Close succeeded")
		}

		var buf bytes.Buffer
		if err := Encode(&buf, tensors, meta); err != nil {
			t.Fatal(err)
		}
		disk, _ := os.ReadFile(path)
		if !bytes.Equal(buf.Bytes(), disk) {
			t.Error("Encode and Write produced different bytes")
		}
		p, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, tensors, meta)
		checkNegativeZero(t, p)
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("directory holds %d entries after Write, want 1", len(entries))
		}
	}
}

// checkNegativeZero checks that the second value of testTensors' "f64"
// tensor comes back from f as a negative zero: sign bit set, in the bytes and
// in the decoded value.
func checkNegativeZero(t *testing.T, f *File) {
	t.Helper()
	data, err := f.Bytes("f64")
	if err != nil {
		t.Fatalf("Bytes(f64): %v", err)
	}
	if want := []byte{0, 0, 0, 0, 0, 0, 0, 0x80}; len(data) != 16 || !bytes.Equal(data[8:], want) {
		t.Fatalf("f64 bytes % x: want the second value encoded as % x (-0)", data, want)
	}
	v, err := FromBytes[float64](data)
	if err != nil {
		t.Fatal(err)
	}
	if v[1] != 0 || !math.Signbit(v[1]) {
		t.Errorf("f64[1] = %v (sign bit %v), want -0", v[1], math.Signbit(v[1]))
	}
}

func TestEmptyFile(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "\x08\x00\x00\x00\x00\x00\x00\x00{}      "; got != want {
		t.Errorf("Encode(nil) = %q, want %q", got, want)
	}
	f, err := Parse(buf.Bytes())
	if err != nil || f.Len() != 0 || f.Metadata() != nil {
		t.Errorf("Parse = %v, %v", f, err)
	}
}

func TestConvert(t *testing.T) {
	f := []float32{1, -2.5, float32(math.NaN())}
	b := ToBytes(f)
	if want := []byte{0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0}; !bytes.Equal(b[:8], want) {
		t.Errorf("ToBytes = %x, want prefix %x", b, want)
	}
	g, err := FromBytes[float32](b)
	if err != nil || len(g) != 3 || g[0] != 1 || g[1] != -2.5 || !math.IsNaN(float64(g[2])) {
		t.Errorf("FromBytes = %v, %v", g, err)
	}
	if _, err := FromBytes[int64](make([]byte, 12)); err == nil {
		t.Error("FromBytes[int64] of 12 bytes succeeded")
	}
	i, _ := FromBytes[int64](ToBytes([]int64{math.MinInt64, 3}))
	if !reflect.DeepEqual(i, []int64{math.MinInt64, 3}) {
		t.Errorf("int64 round trip = %v", i)
	}
	bo, _ := FromBytes[bool]([]byte{1, 0})
	if !reflect.DeepEqual(bo, []bool{true, false}) {
		t.Errorf("bool round trip = %v", bo)
	}
	for _, c := range []struct {
		got  DType
		want DType
	}{{DTypeOf[float32](), F32}, {DTypeOf[float64](), F64}, {DTypeOf[int64](), I64}, {DTypeOf[bool](), BOOL}, {DTypeOf[uint8](), U8}} {
		if c.got != c.want {
			t.Errorf("DTypeOf = %s, want %s", c.got, c.want)
		}
	}
	if BF16.Size() != 2 || F64.Size() != 8 || DType("F4").Size() != 0 {
		t.Error("wrong DType sizes")
	}
}

// rawFile returns a file with the given header text (padded to 8 bytes)
// and dataLen zero bytes of data.
func rawFile(header string, dataLen int) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

func TestCorrupt(t *testing.T) {
	withLen := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	const a = `"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	const b = `"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}`
	tests := []struct {
		name   string
		data   []byte
		err    error
		detail string // substring of the message
	}{
		{"empty file", nil, ErrTruncated, "0 bytes"},
		{"short length", []byte{1, 0, 0}, ErrTruncated, "3 bytes"},
		{"header beyond file", withLen(100, "{}"), ErrTruncated, "header length 100"},
		{"header too large", withLen(MaxHeaderSize+1, "{}"), ErrHeaderTooLarge, "100000001"},
		{"huge header length", withLen(math.MaxUint64, "{}"), ErrHeaderTooLarge, ""},
		{"bad json", rawFile(`{"a":`, 0), ErrHeader, ""},
		{"not an object", rawFile(`[1]`, 0), ErrHeader, "'{'"},
		{"empty header", rawFile(``, 0), ErrHeader, "'{'"},
		{"invalid utf8", rawFile("{\"\xff\":1}", 0), ErrHeader, "UTF-8"},
		{"trailing data", rawFile(`{}x`, 0), ErrHeader, "after the JSON"},
		{"duplicate tensor", rawFile(`{`+a+`,`+a+`}`, 8), ErrHeader, `"a": invalid header: duplicate`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0), ErrHeader, "duplicate __metadata__"},
		{"metadata not strings", rawFile(`{"__metadata__":{"k":1}}`, 0), ErrHeader, "strings to strings"},
		{"tensor not object", rawFile(`{"a":[1]}`, 0), ErrHeader, `"a"`},
		{"missing dtype", rawFile(`{"a":{"shape":[],"data_offsets":[0,4]}}`, 4), ErrHeader, "missing dtype"},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), ErrHeader, "missing shape"},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[]}}`, 4), ErrHeader, "missing data_offsets"},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4,8]}}`, 4), ErrHeader, "3 elements"},
		{"fractional shape", rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), ErrHeader, `"a"`},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F128","shape":[],"data_offsets":[0,4]}}`, 4), ErrDType, `"F128"`},
		{"negative dim", rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), ErrShape, "negative"},
		{"overflowing shape", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), ErrShape, "too many"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), ErrSize, "8 bytes for F32 [3], want 12"},
		{"reversed offsets", rawFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), ErrOffsets, "[4, 0]"},
		{"negative offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, 4), ErrOffsets, "[-4, 0]"},
		{"overlap", rawFile(`{`+a+`,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), ErrOffsets, `overlap tensor "a"`},
		{"gap", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},`+b+`}`, 12), ErrOffsets, "gap of 4 bytes"},
		{"leading gap", rawFile(`{`+b+`}`, 12), ErrOffsets, "gap of 8 bytes"},
		{"uncovered tail", rawFile(`{`+a+`}`, 9), ErrOffsets, "cover 8 of the 9"},
		{"truncated data", rawFile(`{`+a+`,`+b+`}`, 10), ErrTruncated, `"b": truncated file: data_offsets [8, 12] run past the 10-byte`},
		{"offsets beyond file", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1000000000000,1000000000001]}}`, 1), ErrTruncated, "run past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse error = %v, want %v", err, tt.err)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("Parse error = %q, want it to contain %q", err, tt.detail)
			}
		})
	}
}

func TestOpenErrorNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(path, rawFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.File != path || fe.Tensor != "w" || !errors.Is(err, ErrTruncated) {
		t.Fatalf("Open error = %#v", err)
	}
	want := "safetensors: " + path + `: tensor "w": truncated file: data_offsets [0, 8] run past the 4-byte data section`
	if err.Error() != want {
		t.Errorf("Open error = %q\nwant %q", err, want)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
}

func TestWriteErrors(t *testing.T) {
	good := NewTensor("a", []int64{2}, []float32{1, 2})
	tests := []struct {
		name    string
		tensors []Tensor
		err     error
		detail  string
	}{
		{"duplicate", []Tensor{good, good}, nil, `"a": duplicate name`},
		{"reserved", []Tensor{{Name: "__metadata__", DType: U8}}, nil, "reserved"},
		{"unknown dtype", []Tensor{{Name: "x", DType: "F4", Shape: []int64{2}, Data: []byte{0}}}, ErrDType, `"F4"`},
		{"negative dim", []Tensor{{Name: "x", DType: U8, Shape: []int64{-1}}}, ErrShape, "negative"},
		{"size mismatch", []Tensor{{Name: "x", DType: F32, Shape: []int64{2}, Data: make([]byte, 4)}}, ErrSize, "4 data bytes for F32 [2], want 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.safetensors")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Write(path, tt.tensors, nil)
			if err == nil || (tt.err != nil && !errors.Is(err, tt.err)) || !strings.Contains(err.Error(), tt.detail) {
				t.Fatalf("Write error = %v, want %v containing %q", err, tt.err, tt.detail)
			}
			if !strings.HasPrefix(err.Error(), "safetensors: write "+path+": ") {
				t.Errorf("Write error %q does not name the file", err)
			}
			if b, _ := os.ReadFile(path); string(b) != "old" {
				t.Errorf("failed Write changed the file to %q", b)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("failed Write left %d entries in the directory", len(entries))
			}
			if err := Encode(new(bytes.Buffer), tt.tensors, nil); err == nil || !strings.HasPrefix(err.Error(), "safetensors: tensor ") {
				t.Errorf("Encode error = %v", err)
			}
		})
	}
	if err := Write(filepath.Join(t.TempDir(), "no", "such", "dir"), []Tensor{good}, nil); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

func TestWriteReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	for _, v := range []float32{1, 2} {
		if err := Write(path, []Tensor{NewTensor("v", nil, []float32{v})}, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := f.Bytes("v")
	if got, _ := FromBytes[float32](b); got[0] != 2 {
		t.Errorf("v = %v after overwrite, want 2", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", st.Mode())
	}
}

// TestSource: tensors whose bytes come from Source encode to the same file
// as with Data, each Source called once, in the data section's order; a
// Source of the wrong length or failing fails the write, naming the tensor.
func TestSource(t *testing.T) {
	tensors := []Tensor{
		{Name: "b", DType: F32, Shape: []int64{2, 2}, Data: make([]byte, 16)},
		{Name: "a", DType: F64, Shape: []int64{3}, Data: []byte("0123456789abcdefghijklmn")},
		{Name: "c", DType: U8, Shape: []int64{}, Data: []byte{7}},
	}
	tensors[0].Data[5] = 9
	var want bytes.Buffer
	if err := Encode(&want, tensors, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	var calls []string
	lazy := make([]Tensor, len(tensors))
	for i, x := range tensors {
		data := x.Data
		lazy[i] = Tensor{Name: x.Name, DType: x.DType, Shape: x.Shape, Source: func() ([]byte, error) {
			calls = append(calls, x.Name)
			return data, nil
		}}
	}
	var got bytes.Buffer
	if err := Encode(&got, lazy, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("encoded from Source:\n%q\nfrom Data:\n%q", got.Bytes(), want.Bytes())
	}
	if fmt.Sprint(calls) != "[a b c]" {
		t.Errorf("Source calls %v, want [a b c] (the data section's order)", calls)
	}
	for name, src := range map[string]func() ([]byte, error){
		"short":   func() ([]byte, error) { return make([]byte, 15), nil },
		"failing": func() ([]byte, error) { return nil, errors.New("device lost") },
	} {
		bad := []Tensor{{Name: "w", DType: F32, Shape: []int64{2, 2}, Source: src}}
		err := Write(filepath.Join(t.TempDir(), "x.safetensors"), bad, nil)
		if err == nil || !strings.Contains(err.Error(), `tensor "w"`) {
			t.Errorf("%s: error %v, want one naming the tensor", name, err)
		}
		if name == "short" && !errors.Is(err, ErrSize) {
			t.Errorf("short: error %v, want ErrSize", err)
		}
	}
}
