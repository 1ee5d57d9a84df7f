package safetensors

import (
	"bytes"
	"clm/internal/mmapfile"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// A File is an open safetensors file. Its methods may be called
// concurrently, except Close.
type File struct {
	name     string
	data     []byte // the whole file
	start    int64  // offset of the data section in data
	infos    map[string]*TensorInfo
	names    []string // sorted
	metadata map[string]string
	unmap    func() error
}

// Open opens and validates the named file. On Unix systems the file is
// mapped into memory read-only; elsewhere it is read whole. The file must
// not be truncated while it is open.
func Open(name string) (*File, error) {
	data, unmap, err := mapFile(name)
	if err != nil {
		return nil, err
	}
	f, err := parse(name, data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Parse validates data as the contents of a safetensors file. The returned
// File refers to data, which must not be modified.
func Parse(data []byte) (*File, error) { return parse("", data) }

// Close releases the file's memory mapping. Slices returned by Bytes are
// invalid afterwards.
func (f *File) Close() error {
	f.data = nil
	if f.unmap == nil {
		return nil
	}
	u := f.unmap
	f.unmap = nil
	if err := u(); err != nil {
		return fmt.Errorf("safetensors: close %s: %w", f.name, err)
	}
	return nil
}

// Names returns the names of the tensors in sorted order.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Len returns the number of tensors.
func (f *File) Len() int { return len(f.names) }

// Info returns the description of the named tensor, and whether it exists.
func (f *File) Info(name string) (TensorInfo, bool) {
	ti, ok := f.infos[name]
	if !ok {
		return TensorInfo{}, false
	}
	c := *ti
	c.Shape = slices.Clone(ti.Shape)
	return c, true
}

// Metadata returns a copy of the header's __metadata__, or nil if it has
// none.
func (f *File) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Bytes returns the raw little-endian data of the named tensor. The slice
// is a view of the file and must not be modified; it is valid until Close.
func (f *File) Bytes(name string) ([]byte, error) {
	ti, ok := f.infos[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.displayName(), name)
	}
	if f.data == nil {
		return nil, fmt.Errorf("safetensors: %s: file is closed", f.displayName())
	}
	b := f.data[f.start+ti.Begin : f.start+ti.End]
	return b[:len(b):len(b)], nil
}

// Tensor returns the named tensor, with Data a view of the file as for
// Bytes.
func (f *File) Tensor(name string) (Tensor, error) {
	b, err := f.Bytes(name)
	if err != nil {
		return Tensor{}, err
	}
	ti := f.infos[name]
	return Tensor{Name: name, DType: ti.DType, Shape: slices.Clone(ti.Shape), Data: b}, nil
}

func (f *File) displayName() string {
	if f.name == "" {
		return "<data>"
	}
	return f.name
}

// rawInfo is a tensor entry of the header as decoded from JSON; nil fields
// are missing.
type rawInfo struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parse validates data as a safetensors file: the header length, the JSON
// header of tensor entries and metadata, and data offsets that tile the data
// section. Errors name the file as name.
func parse(name string, data []byte) (*File, error) {
	f := &File{name: name, data: data, infos: make(map[string]*TensorInfo)}
	hdr, err := f.header()
	if err != nil {
		return nil, err
	}
	f.start = int64(8 + len(hdr))
	dataLen := int64(len(data)) - f.start
	if err := f.decodeHeader(hdr, dataLen); err != nil {
		return nil, err
	}
	if err := f.checkTiling(dataLen); err != nil {
		return nil, err
	}
	slices.Sort(f.names)
	return f, nil
}

// fail returns a FormatError of the file about tensor ("" for the file as a
// whole).
func (f *File) fail(tensor string, err error, format string, args ...any) error {
	return &FormatError{File: f.name, Tensor: tensor, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// header returns the JSON header of the file's data, after checking its
// length prefix and that it is UTF-8 text starting with '{'.
func (f *File) header() ([]byte, error) {
	data := f.data
	if len(data) < 8 {
		return nil, f.fail("", ErrTruncated, "%d bytes, less than the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return nil, f.fail("", ErrHeaderTooLarge, "%d bytes, limit %d", n, MaxHeaderSize)
	}
	if n > uint64(len(data)-8) {
		return nil, f.fail("", ErrTruncated, "header length %d exceeds the %d bytes after it", n, len(data)-8)
	}
	hdr := data[8 : 8+n]
	if !utf8.Valid(hdr) {
		return nil, f.fail("", ErrHeader, "not valid UTF-8")
	}
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, f.fail("", ErrHeader, "does not start with '{'")
	}
	return hdr, nil
}

// decodeHeader reads the entries of the JSON header into f: at most one
// __metadata__ and one entry per tensor, each checked against a data section
// of dataLen bytes. Nothing may follow the JSON object.
func (f *File) decodeHeader(hdr []byte, dataLen int64) error {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if _, err := dec.Token(); err != nil { // '{', checked above
		return f.fail("", ErrHeader, "%v", err)
	}
	seenMetadata := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return f.fail("", ErrHeader, "%v", err)
		}
		key := tok.(string) // object keys are always strings
		if key == metadataKey {
			if seenMetadata {
				return f.fail("", ErrHeader, "duplicate %s", metadataKey)
			}
			seenMetadata = true
			err = f.decodeMetadata(dec)
		} else {
			err = f.decodeTensor(dec, key, dataLen)
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return f.fail("", ErrHeader, "%v", err)
	}
	if rest := hdr[dec.InputOffset():]; len(strings.Trim(string(rest), " \t\r\n")) != 0 {
		return f.fail("", ErrHeader, "data after the JSON object")
	}
	return nil
}

// decodeMetadata reads the value of __metadata__, a map of strings.
func (f *File) decodeMetadata(dec *json.Decoder) error {
	var m map[string]string
	if err := dec.Decode(&m); err != nil {
		return f.fail("", ErrHeader, "%s must map strings to strings: %v", metadataKey, err)
	}
	f.metadata = m
	return nil
}

// decodeTensor reads and checks the entry of the tensor named key.
func (f *File) decodeTensor(dec *json.Decoder, key string, dataLen int64) error {
	if _, dup := f.infos[key]; dup {
		return f.fail(key, ErrHeader, "duplicate tensor name")
	}
	var raw rawInfo
	if err := dec.Decode(&raw); err != nil {
		return f.fail(key, ErrHeader, "%v", err)
	}
	ti, err := checkInfo(key, &raw, dataLen)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.File = f.name
		}
		return err
	}
	f.infos[key] = ti
	f.names = append(f.names, key)
	return nil
}

// checkTiling checks that the tensors tile [0, dataLen) exactly: in order of
// offsets, each begins where the one before ends, and the last ends at
// dataLen.
func (f *File) checkTiling(dataLen int64) error {
	var end int64
	var prev string
	for _, ti := range f.byOffset() {
		switch {
		case ti.Begin < end:
			return f.fail(ti.Name, ErrOffsets, "data_offsets [%d, %d] overlap tensor %q", ti.Begin, ti.End, prev)
		case ti.Begin > end:
			return f.fail(ti.Name, ErrOffsets, "gap of %d bytes before data_offsets [%d, %d]", ti.Begin-end, ti.Begin, ti.End)
		}
		end, prev = ti.End, ti.Name
	}
	if end != dataLen {
		return f.fail("", ErrOffsets, "tensors cover %d of the %d data bytes", end, dataLen)
	}
	return nil
}

// byOffset returns the tensors sorted by data offsets, then by name.
func (f *File) byOffset() []*TensorInfo {
	s := make([]*TensorInfo, 0, len(f.infos))
	for _, ti := range f.infos {
		s = append(s, ti)
	}
	slices.SortFunc(s, func(a, b *TensorInfo) int {
		if c := a.Begin - b.Begin; c != 0 {
			return int(max(-1, min(1, c)))
		}
		if c := a.End - b.End; c != 0 {
			return int(max(-1, min(1, c)))
		}
		return strings.Compare(a.Name, b.Name)
	})
	return s
}

// checkInfo validates one header entry against a data section of dataLen
// bytes.
func checkInfo(name string, raw *rawInfo, dataLen int64) (*TensorInfo, error) {
	fail := func(err error, format string, args ...any) error {
		return &FormatError{Tensor: name, Err: err, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case raw.DType == nil:
		return nil, fail(ErrHeader, "missing dtype")
	case raw.Shape == nil:
		return nil, fail(ErrHeader, "missing shape")
	case raw.DataOffsets == nil:
		return nil, fail(ErrHeader, "missing data_offsets")
	case len(*raw.DataOffsets) != 2:
		return nil, fail(ErrHeader, "data_offsets has %d elements, want 2", len(*raw.DataOffsets))
	}
	ti := &TensorInfo{Name: name, DType: DType(*raw.DType), Shape: *raw.Shape}
	if ti.Shape == nil {
		ti.Shape = []int64{}
	}
	ti.Begin, ti.End = (*raw.DataOffsets)[0], (*raw.DataOffsets)[1]
	if ti.DType.Size() == 0 {
		return nil, fail(ErrDType, "%q", *raw.DType)
	}
	n, err := numElements(ti.Shape)
	if err != nil {
		return nil, fail(ErrShape, "%v", err)
	}
	switch {
	case ti.Begin < 0 || ti.End < ti.Begin:
		return nil, fail(ErrOffsets, "data_offsets [%d, %d] are not a valid range", ti.Begin, ti.End)
	case ti.End > dataLen:
		return nil, fail(ErrTruncated, "data_offsets [%d, %d] run past the %d-byte data section", ti.Begin, ti.End, dataLen)
	}
	if want := n * int64(ti.DType.Size()); ti.End-ti.Begin != want {
		return nil, fail(ErrSize, "%d bytes for %s %v, want %d", ti.End-ti.Begin, ti.DType, ti.Shape, want)
	}
	return ti, nil
}

// mapFile maps the named file read-only (reads it when it is too short to
// be valid, not a regular file, or mmap is unavailable) and returns its
// contents and a function that releases them.
func mapFile(name string) ([]byte, func() error, error) {
	b, release, err := mmapfile.Open(name, 8)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	return b, release, nil
}
