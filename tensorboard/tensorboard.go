// Package tensorboard writes TensorBoard event files holding scalar
// summaries.
//
// An event file is a sequence of TFRecord records, each a serialized
// tensorflow.Event protocol buffer. A record is
//
//	uint64 length, little-endian
//	uint32 masked CRC-32C of the 8 length bytes
//	length bytes of data
//	uint32 masked CRC-32C of the data
//
// where the mask of a checksum c is ((c >> 15) | (c << 17)) + 0xa282ead8.
// The first event of a file carries file_version "brain.Event:2"; each
// later one carries a Summary of simple_value scalars.
package tensorboard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// FileVersion is the file_version of the first event of every file.
const FileVersion = "brain.Event:2"

// autoFlush is how long written events may stay buffered: a write flushes
// the buffer when the last flush is older.
const autoFlush = 10 * time.Second

// A Writer writes events to a new event file. Events are buffered, and
// reach the file on Flush, on Close, and on the first write more than 10
// seconds after the previous flush. A Writer is safe for concurrent use.
type Writer struct {
	mu        sync.Mutex
	path      string
	f         *os.File
	bw        *bufio.Writer
	err       error // sticky: the first write error
	closed    bool
	lastFlush time.Time
	buf       []byte // scratch for encoding events
}

// ErrClosed is returned (wrapped) by writes to a closed Writer.
var ErrClosed = errors.New("writer is closed")

// NewWriter creates dir if needed and a new event file in it, named
// events.out.tfevents.<unix seconds>.<hostname> (with a numeric suffix if
// that name is taken), and writes the file_version event to it.
func NewWriter(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	now := time.Now()
	base := filepath.Join(dir, "events.out.tfevents."+strconv.FormatInt(now.Unix(), 10)+"."+host)
	var f *os.File
	path := base
	for i := 1; ; i++ {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, os.ErrExist) || i > 1000 {
			break
		}
		path = base + "." + strconv.Itoa(i)
	}
	if err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	w := &Writer{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<16), lastFlush: now}
	w.writeEvent(appendFileVersionEvent(nil, wallTime(now)))
	if err := w.Flush(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return w, nil
}

// Path returns the name of the event file.
func (w *Writer) Path() string { return w.path }

// Scalar writes one scalar summary. TensorBoard stores the value as a
// float32.
func (w *Writer) Scalar(tag string, step int64, value float64) error {
	return w.Scalars(step, map[string]float64{tag: value})
}

// Scalars writes scalars with the same step as one event, in tag order.
func (w *Writer) Scalars(step int64, values map[string]float64) error {
	tags := make([]string, 0, len(values))
	for tag := range values {
		tags = append(tags, tag)
	}
	slices.Sort(tags)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.wrap(ErrClosed)
	}
	w.buf = appendScalarEvent(w.buf[:0], wallTime(now), step, tags, values)
	w.writeEvent(w.buf)
	if now.Sub(w.lastFlush) >= autoFlush {
		w.flush(now)
	}
	return w.err
}

// Flush writes buffered events to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.wrap(ErrClosed)
	}
	w.flush(time.Now())
	return w.err
}

// Sync writes buffered events to the file and makes them durable (fsync).
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.wrap(ErrClosed)
	}
	w.flush(time.Now())
	if w.err == nil {
		if err := w.f.Sync(); err != nil {
			w.err = w.wrap(err)
		}
	}
	return w.err
}

// Close flushes buffered events, syncs and closes the file. Writes after
// Close fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.wrap(ErrClosed)
	}
	w.closed = true
	w.flush(time.Now())
	if w.err == nil {
		if err := w.f.Sync(); err != nil {
			w.err = w.wrap(err)
		}
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = w.wrap(err)
	}
	return w.err
}

func (w *Writer) wrap(err error) error {
	return fmt.Errorf("tensorboard: %s: %w", w.path, err)
}

func (w *Writer) flush(now time.Time) {
	if w.err != nil {
		return
	}
	if err := w.bw.Flush(); err != nil {
		w.err = w.wrap(err)
	}
	w.lastFlush = now
}

// writeEvent frames data as a record and buffers it; w.mu is held, or w is
// not yet shared.
func (w *Writer) writeEvent(data []byte) {
	if w.err != nil {
		return
	}
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[8:], maskedCRC(hdr[:8]))
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], maskedCRC(data))
	w.bw.Write(hdr[:])
	w.bw.Write(data)
	if _, err := w.bw.Write(tail[:]); err != nil {
		w.err = w.wrap(err)
	}
}

func wallTime(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC returns the masked CRC-32C of b used by TFRecord.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// Protocol buffer encoding of the few fields written (tensorflow/core/util/
// event.proto and framework/summary.proto).
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5

	eventWallTime    = 1 // double
	eventStep        = 2 // int64
	eventFileVersion = 3 // string
	eventSummary     = 5 // Summary
	summaryValue     = 1 // repeated Summary.Value
	valueTag         = 1 // string
	valueSimpleValue = 2 // float
)

func appendTag(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field<<3|wire))
}

func appendBytesField(b []byte, field int, s []byte) []byte {
	b = appendTag(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendEventHeader appends the wall_time and step fields of an Event.
func appendEventHeader(b []byte, wallTime float64, step int64) []byte {
	b = appendTag(b, eventWallTime, wireFixed64)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(wallTime))
	if step != 0 {
		b = appendTag(b, eventStep, wireVarint)
		b = binary.AppendUvarint(b, uint64(step)) // int64: two's complement
	}
	return b
}

func appendFileVersionEvent(b []byte, wallTime float64) []byte {
	b = appendEventHeader(b, wallTime, 0)
	return appendBytesField(b, eventFileVersion, []byte(FileVersion))
}

func appendScalarEvent(b []byte, wallTime float64, step int64, tags []string, values map[string]float64) []byte {
	b = appendEventHeader(b, wallTime, step)
	var summary, value []byte
	for _, tag := range tags {
		value = appendBytesField(value[:0], valueTag, []byte(tag))
		value = appendTag(value, valueSimpleValue, wireFixed32)
		value = binary.LittleEndian.AppendUint32(value, math.Float32bits(float32(values[tag])))
		summary = appendBytesField(summary, summaryValue, value)
	}
	return appendBytesField(b, eventSummary, summary)
}
