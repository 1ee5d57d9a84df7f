package safetensors

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// A Tensor is a named tensor with its raw little-endian, row-major data.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64 // empty for a scalar (0-d) tensor
	// Data holds the tensor's bytes (little-endian, row-major). When Data
	// is nil and Source is not, Source gives them at the moment the tensor
	// is written, so that a file of many large tensors never needs more
	// than one of them in memory; their length is checked then.
	Data   []byte
	Source func() ([]byte, error)
}

// Encode writes tensors and metadata to w in the safetensors format. The
// tensors are laid out as the reference implementation does: by decreasing
// dtype (so each is aligned to its element size), then by name. Metadata is
// omitted from the header when empty.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	if err := encode(w, tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

func encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, order, err := header(tensors, metadata)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	bw.Write(n[:])
	bw.Write(hdr)
	for _, i := range order {
		t := &tensors[i]
		data := t.Data
		if data == nil && t.Source != nil {
			var err error
			if data, err = t.Source(); err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
			if err := t.checkSize(data); err != nil {
				return err
			}
		}
		if _, err := bw.Write(data); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Write writes tensors and metadata to the named file as Encode does. It
// writes a temporary file in the same directory, syncs it and renames it
// over name, so that name is either left untouched or holds the complete
// new file.
func Write(name string, tensors []Tensor, metadata map[string]string) (err error) {
	// Validate before creating anything.
	if _, _, err := header(tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", name, err)
	}
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("safetensors: write %s: %w", name, err)
		}
	}()
	if err := encode(tmp, tensors, metadata); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	// Make the rename durable; not all systems can sync a directory.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// byteSize is the size of t's data: from its shape and dtype (validated by
// header).
func (t *Tensor) byteSize() int64 {
	n, _ := numElements(t.Shape)
	return n * int64(t.DType.Size())
}

// checkSize returns an ErrSize error naming t unless data has byteSize
// bytes.
func (t *Tensor) checkSize(data []byte) error {
	if want := t.byteSize(); int64(len(data)) != want {
		return fmt.Errorf("tensor %q: %w: %d data bytes for %s %v, want %d", t.Name, ErrSize, len(data), t.DType, t.Shape, want)
	}
	return nil
}

// header validates tensors and metadata and returns the padded JSON header
// and the order of the tensors in the data section.
func header(tensors []Tensor, metadata map[string]string) ([]byte, []int, error) {
	if err := validate(tensors); err != nil {
		return nil, nil, err
	}
	order := dataOrder(tensors)
	var buf bytes.Buffer
	buf.WriteByte('{')
	if len(metadata) > 0 {
		writeString(&buf, metadataKey)
		buf.WriteString(":{")
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(&buf, k)
			buf.WriteByte(':')
			writeString(&buf, metadata[k])
		}
		buf.WriteByte('}')
	}
	var off int64
	for _, i := range order {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		off = writeEntry(&buf, &tensors[i], off)
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	if buf.Len() > MaxHeaderSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, buf.Len(), MaxHeaderSize)
	}
	return buf.Bytes(), order, nil
}

// validate refuses reserved and duplicate names, unknown dtypes, bad
// shapes and data of the wrong size (data coming from a Source is checked
// when written).
func validate(tensors []Tensor) error {
	fail := func(name, format string, args ...any) error {
		return fmt.Errorf("tensor %q: "+format, append([]any{name}, args...)...)
	}
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if t.Name == metadataKey {
			return fail(t.Name, "reserved name")
		}
		if seen[t.Name] {
			return fail(t.Name, "duplicate name")
		}
		seen[t.Name] = true
		if t.DType.Size() == 0 {
			return fail(t.Name, "%w %q", ErrDType, string(t.DType))
		}
		if _, err := numElements(t.Shape); err != nil {
			return fail(t.Name, "%w: %v", ErrShape, err)
		}
		if t.Data == nil && t.Source != nil {
			continue // checked when written
		}
		if err := t.checkSize(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// dataOrder is the order of the tensors in the data section: by dtype
// rank, largest first, then by name (the safetensors library's order).
func dataOrder(tensors []Tensor) []int {
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := tensors[i], tensors[j]
		if c := cmp.Compare(b.DType.rank(), a.DType.rank()); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return order
}

// writeEntry writes t's header entry with its data at offset off and
// returns the offset after it.
func writeEntry(buf *bytes.Buffer, t *Tensor, off int64) int64 {
	writeString(buf, t.Name)
	buf.WriteString(`:{"dtype":`)
	writeString(buf, string(t.DType))
	buf.WriteString(`,"shape":[`)
	for k, d := range t.Shape {
		if k > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.FormatInt(d, 10))
	}
	end := off + t.byteSize()
	fmt.Fprintf(buf, `],"data_offsets":[%d,%d]}`, off, end)
	return end
}

// writeString writes s as a JSON string, without the HTML escaping of
// json.Marshal.
func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)               // cannot fail for a string
	buf.Truncate(buf.Len() - 1) // drop the newline
}
