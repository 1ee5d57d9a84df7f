package tensorboard

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"clm/internal/atomicfile"
)

// Truncate makes the event files of dir hold what a run resumed from a
// checkpoint of step keep has logged: events of later steps go, and so does
// a record cut by a crash with everything after it. keep < 0 (a run that
// starts over) removes every event file. Files are rewritten atomically.
func Truncate(dir string, keep int64) error {
	paths, err := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	// Temporary files of a rewrite that a crash interrupted.
	stale, _ := filepath.Glob(filepath.Join(dir, ".events.out.tfevents.*.tmp"))
	for _, p := range stale {
		os.Remove(p)
	}
	for _, p := range paths {
		if keep < 0 {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("tensorboard: %w", err)
			}
			continue
		}
		if err := truncateFile(p, keep); err != nil {
			return err
		}
	}
	return nil
}

// truncateFile rewrites one event file without the records past keep.
func truncateFile(path string, keep int64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	var out []byte
	for _, rec := range scanRecords(data) {
		if step, ok := eventStepOf(rec); ok && step <= keep {
			out = appendRecord(out, rec)
		}
	}
	if len(out) == len(data) {
		return nil
	}
	if err := atomicfile.Write(path, out, 0o644); err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	return nil
}

// scanRecords splits event-file data into its records' payloads, stopping
// at the first record that is cut or fails a checksum.
func scanRecords(data []byte) [][]byte {
	var recs [][]byte
	for len(data) >= 12 {
		n := binary.LittleEndian.Uint64(data)
		if binary.LittleEndian.Uint32(data[8:]) != maskedCRC(data[:8]) || uint64(len(data)-12) < n+4 {
			break
		}
		rec := data[12 : 12+n]
		if binary.LittleEndian.Uint32(data[12+n:]) != maskedCRC(rec) {
			break
		}
		recs = append(recs, rec)
		data = data[16+n:]
	}
	return recs
}

// appendRecord frames an event's payload as a TFRecord.
func appendRecord(b, rec []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(rec)))
	b = binary.LittleEndian.AppendUint32(b, maskedCRC(b[len(b)-8:]))
	b = append(b, rec...)
	return binary.LittleEndian.AppendUint32(b, maskedCRC(rec))
}

// Scalar is one scalar summary of an event file.
type Scalar struct {
	Step  int64
	Tag   string
	Value float32
}

// ReadScalars returns the scalars of the event files of dir, file by file
// in name order, records in file order; a record cut by a crash ends its
// file.
func ReadScalars(dir string) ([]Scalar, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	if err != nil {
		return nil, err
	}
	var out []Scalar
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("tensorboard: %w", err)
		}
		for _, rec := range scanRecords(data) {
			step, _ := eventStepOf(rec)
			walk(rec, func(field, _, _ uint64, p []byte) {
				if field != eventSummary {
					return
				}
				walk(p, func(field, _, _ uint64, v []byte) {
					s := Scalar{Step: step}
					walk(v, func(field, wire, _ uint64, x []byte) {
						switch {
						case field == valueTag:
							s.Tag = string(x)
						case field == valueSimpleValue && wire == wireFixed32:
							s.Value = math.Float32frombits(binary.LittleEndian.Uint32(x))
						}
					})
					out = append(out, s)
				})
			})
		}
	}
	return out, nil
}

// walk calls fn with each field of a message: its number, wire type, value
// (varints) and payload (fixed and length-delimited fields). It reports
// false for a malformed message, after the fields before the fault.
func walk(msg []byte, fn func(field, wire, v uint64, payload []byte)) bool {
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return false
		}
		msg = msg[n:]
		field, wire := key>>3, key&7
		var v uint64
		var size int
		switch wire {
		case wireVarint:
			if v, n = binary.Uvarint(msg); n <= 0 {
				return false
			}
			msg = msg[n:]
		case wireFixed64:
			size = 8
		case wireFixed32:
			size = 4
		case wireBytes:
			l, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < l {
				return false
			}
			msg, size = msg[n:], int(l)
		default:
			return false
		}
		if len(msg) < size {
			return false
		}
		fn(field, wire, v, msg[:size])
		msg = msg[size:]
	}
	return true
}

// eventStepOf reads the step of an encoded Event (0 when absent, as for the
// file-version event); ok is false for a record that does not parse.
func eventStepOf(rec []byte) (step int64, ok bool) {
	ok = walk(rec, func(field, wire, v uint64, _ []byte) {
		if field == eventStep && wire == wireVarint {
			step = int64(v)
		}
	})
	return step, ok
}
