package tensorboard

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
)

// event is a decoded tensorflow.Event with the fields the package writes.
type event struct {
	wallTime    float64
	step        int64
	fileVersion string
	values      []value
}

type value struct {
	tag string
	v   float32
}

// readRecords splits an event file into records, checking both CRCs of
// each with an implementation independent of maskedCRC.
func readRecords(data []byte) ([][]byte, error) {
	table := crc32.MakeTable(crc32.Castagnoli)
	masked := func(b []byte) uint32 {
		c := uint64(crc32.Checksum(b, table))
		rot := (c>>15 | c<<17) & 0xffffffff
		return uint32((rot + 0xa282ead8) % (1 << 32))
	}
	var recs [][]byte
	for len(data) > 0 {
		if len(data) < 12 {
			return nil, fmt.Errorf("truncated record header")
		}
		n := binary.LittleEndian.Uint64(data)
		if got, want := binary.LittleEndian.Uint32(data[8:]), masked(data[:8]); got != want {
			return nil, fmt.Errorf("length crc %#x, want %#x", got, want)
		}
		data = data[12:]
		if uint64(len(data)) < n+4 {
			return nil, fmt.Errorf("truncated record")
		}
		rec := data[:n]
		if got, want := binary.LittleEndian.Uint32(data[n:]), masked(rec); got != want {
			return nil, fmt.Errorf("data crc %#x, want %#x", got, want)
		}
		recs = append(recs, rec)
		data = data[n+4:]
	}
	return recs, nil
}

// fields decodes a protocol buffer message into (field, wire type, payload)
// triples; varint payloads are returned as their value in v.
func fields(b []byte, fn func(field, wire int, v uint64, payload []byte) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return fmt.Errorf("bad key")
		}
		b = b[n:]
		field, wire := int(key>>3), int(key&7)
		var v uint64
		var payload []byte
		switch wire {
		case 0:
			v, n = binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("bad varint")
			}
			b = b[n:]
		case 1, 5:
			size := 8
			if wire == 5 {
				size = 4
			}
			if len(b) < size {
				return fmt.Errorf("truncated fixed field")
			}
			payload, b = b[:size], b[size:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return fmt.Errorf("bad length")
			}
			payload, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("wire type %d", wire)
		}
		if err := fn(field, wire, v, payload); err != nil {
			return err
		}
	}
	return nil
}

func decodeEvent(rec []byte) (event, error) {
	var ev event
	err := fields(rec, func(field, wire int, v uint64, p []byte) error {
		switch {
		case field == 1 && wire == 1:
			ev.wallTime = math.Float64frombits(binary.LittleEndian.Uint64(p))
		case field == 2 && wire == 0:
			ev.step = int64(v)
		case field == 3 && wire == 2:
			ev.fileVersion = string(p)
		case field == 5 && wire == 2:
			return fields(p, func(field, wire int, _ uint64, p []byte) error {
				if field != 1 || wire != 2 {
					return fmt.Errorf("summary field %d/%d", field, wire)
				}
				var val value
				err := fields(p, func(field, wire int, _ uint64, p []byte) error {
					switch {
					case field == 1 && wire == 2:
						val.tag = string(p)
					case field == 2 && wire == 5:
						val.v = math.Float32frombits(binary.LittleEndian.Uint32(p))
					default:
						return fmt.Errorf("value field %d/%d", field, wire)
					}
					return nil
				})
				ev.values = append(ev.values, val)
				return err
			})
		default:
			return fmt.Errorf("event field %d/%d", field, wire)
		}
		return nil
	})
	return ev, err
}

func readEvents(t *testing.T, path string) []event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readRecords(data)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event
	for _, r := range recs {
		ev, err := decodeEvent(r)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestMaskedCRC(t *testing.T) {
	// CRC-32C("123456789") = 0xe3069283 (RFC 3720, B.4).
	c := uint32(0xe3069283)
	if got, want := maskedCRC([]byte("123456789")), (c>>15|c<<17)+0xa282ead8; got != want {
		t.Errorf("maskedCRC = %#x, want %#x", got, want)
	}
}

func TestEncodeEvent(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"file version", appendFileVersionEvent(nil, 1.5),
			"09" + "000000000000f83f" + "1a0d" + hex.EncodeToString([]byte("brain.Event:2"))},
		{"scalar", appendScalarEvent(nil, 1.5, 3, []string{"a"}, map[string]float64{"a": 0.5}),
			"09000000000000f83f" + "1003" + "2a0a" + "0a08" + "0a0161" + "150000003f"},
		{"step 0 omitted", appendScalarEvent(nil, 0, 0, nil, nil), "090000000000000000" + "2a00"},
		{"negative step", appendScalarEvent(nil, 0, -1, nil, nil), "090000000000000000" + "10ffffffffffffffffff01" + "2a00"},
		{"two values", appendScalarEvent(nil, 0, 300, []string{"x", "y"}, map[string]float64{"x": 1, "y": -2}),
			"090000000000000000" + "10ac02" + "2a14" + "0a08" + "0a0178" + "150000803f" + "0a08" + "0a0179" + "15000000c0"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.got); got != tt.want {
			t.Errorf("%s: encoded %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestWriter writes an event file with a Writer, also from goroutines at
// once, and decodes it.
func TestWriter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "1") // created by NewWriter
	w := newNamedWriters(t, dir)
	checkBuffering(t, w)
	want := []event{{fileVersion: FileVersion}, {step: 1, values: []value{{"loss", 2.5}}}}
	if err := w.Scalars(2, map[string]float64{"loss": 1.25, "lr": 3e-4, "grad/norm": math.Inf(1)}); err != nil {
		t.Fatal(err)
	}
	want = append(want, event{step: 2, values: []value{{"grad/norm", float32(math.Inf(1))}, {"loss", 1.25}, {"lr", 3e-4}}})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				if err := w.Scalar(fmt.Sprintf("g%d", g), int64(i), float64(i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	checkClose(t, w)

	evs := readEvents(t, w.Path())
	if len(evs) != 3+4000 {
		t.Fatalf("read %d events, want %d", len(evs), 3+4000)
	}
	for i, w := range want {
		got := evs[i]
		if got.wallTime < 1e9 || got.step != w.step || got.fileVersion != w.fileVersion || fmt.Sprint(got.values) != fmt.Sprint(w.values) {
			t.Errorf("event %d = %+v, want %+v", i, got, w)
		}
	}
	next := map[string]int64{}
	for _, ev := range evs[3:] {
		tag := ev.values[0].tag
		if ev.step != next[tag] || ev.values[0].v != float32(ev.step) {
			t.Fatalf("event %+v out of order", ev)
		}
		next[tag]++
	}
}

// newNamedWriters opens a Writer in dir and checks that its file is named as
// TensorFlow names event files and that a second Writer of dir gets another
// file. It returns the first Writer.
func newNamedWriters(t *testing.T, dir string) *Writer {
	t.Helper()
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if !regexp.MustCompile(`^events\.out\.tfevents\.\d{10}\.` + regexp.QuoteMeta(host) + `$`).MatchString(filepath.Base(w.Path())) {
		t.Errorf("file name %q", filepath.Base(w.Path()))
	}
	w2, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Path() == w.Path() {
		t.Error("two writers share a file")
	}
	w2.Close()
	return w
}

// checkBuffering checks that the file_version event of the new Writer w is
// on disk at once and that a scalar (loss 2.5 at step 1) waits for Flush.
func checkBuffering(t *testing.T, w *Writer) {
	t.Helper()
	size := func() int64 {
		st, err := os.Stat(w.Path())
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	first := size()
	if err := w.Scalar("loss", 1, 2.5); err != nil {
		t.Fatal(err)
	}
	if size() != first {
		t.Error("Scalar wrote through the buffer")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if size() == first {
		t.Error("Flush wrote nothing")
	}
}

// checkClose closes w and checks that writing and closing again fail with
// ErrClosed.
func checkClose(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Scalar("x", 1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Scalar after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func TestRecordsDetectCorruption(t *testing.T) {
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w.Scalar("a", 1, 1)
	w.Close()
	data, _ := os.ReadFile(w.Path())
	if _, err := readRecords(data); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		c := bytes.Clone(data)
		c[i] ^= 0x10
		if _, err := readRecords(c); err == nil {
			t.Errorf("flipping a bit of byte %d went undetected", i)
		}
	}
}

func TestNewWriterError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := NewWriter(filepath.Join(file, "sub")); err == nil {
		t.Error("NewWriter under a regular file succeeded")
	}
}

// TestTruncate: a resumed run's event files keep the events up to its
// checkpoint's step and lose a record cut by a crash; a run that starts
// over loses them all.
func TestTruncate(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for step := int64(1); step <= 10; step++ {
		w.Scalars(step, map[string]float64{"train/loss": float64(step), "train/lr": 0.5})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(w.Path())
	// A crash while the next record was written: half of it is on disk.
	os.WriteFile(w.Path(), append(whole, whole[len(whole)-40:len(whole)-10]...), 0o644)
	for _, keep := range []int64{12, 5} {
		if err := Truncate(dir, keep); err != nil {
			t.Fatal(err)
		}
		evs := readEvents(t, w.Path()) // fails on a partial record
		want := min(keep, 10)
		if len(evs) != int(want)+1 || evs[0].fileVersion != FileVersion || evs[len(evs)-1].step != want {
			t.Fatalf("keep %d: %d events, last step %d", keep, len(evs), evs[len(evs)-1].step)
		}
	}
	// A damaged record in the middle: it and the rest go.
	data, _ := os.ReadFile(w.Path())
	recs, _ := readRecords(data)
	off := 0
	for _, r := range recs[:3] {
		off += 16 + len(r)
	}
	data[off+14] ^= 0xff
	os.WriteFile(w.Path(), data, 0o644)
	if err := Truncate(dir, 5); err != nil {
		t.Fatal(err)
	}
	if evs := readEvents(t, w.Path()); len(evs) != 3 {
		t.Errorf("after a damaged 4th record: %d events, want 3", len(evs))
	}
	// A rewrite interrupted by a crash leaves its temporary file behind.
	stale := filepath.Join(dir, "."+filepath.Base(w.Path())+".123.tmp")
	os.WriteFile(stale, []byte("half"), 0o644)
	if err := Truncate(dir, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("the stale temporary file %s is still there", stale)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "events.*")); len(files) != 0 {
		t.Errorf("starting over left %v", files)
	}
}

// TestReadScalars: the package's reader gives back what the writer wrote,
// as the test's independent decoder reads it.
func TestReadScalars(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for step := int64(1); step <= 4; step++ {
		w.Scalars(step, map[string]float64{"eval/loss": 1 / float64(step), "train/lr": float64(step) * 1e-3})
	}
	w.Close()
	got, err := ReadScalars(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []Scalar
	for _, ev := range readEvents(t, w.Path()) {
		for _, v := range ev.values {
			want = append(want, Scalar{Step: ev.step, Tag: v.tag, Value: v.v})
		}
	}
	if len(got) != 8 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ReadScalars %v, want %v", got, want)
	}
}
