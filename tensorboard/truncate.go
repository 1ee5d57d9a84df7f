package tensorboard

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	for _, p := range paths {
		if strings.HasSuffix(p, ".tmp") {
			os.Remove(p)
			continue
		}
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
	rest := data
	for len(rest) >= 12 {
		n := binary.LittleEndian.Uint64(rest)
		if binary.LittleEndian.Uint32(rest[8:]) != maskedCRC(rest[:8]) || uint64(len(rest)-12) < n+4 {
			break // a cut or damaged record: it and what follows are lost
		}
		rec := rest[12 : 12+n]
		if binary.LittleEndian.Uint32(rest[12+n:]) != maskedCRC(rec) {
			break
		}
		if step, ok := eventStepOf(rec); ok && step <= keep {
			out = append(out, rest[:16+n]...)
		}
		rest = rest[16+n:]
	}
	if len(out) == len(data) {
		return nil
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	_, err = f.Write(out)
	if e := f.Sync(); err == nil {
		err = e
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tensorboard: %w", err)
	}
	return nil
}

// eventStepOf reads the step of an encoded Event (0 when absent, as for the
// file-version event); ok is false for a record that does not parse.
func eventStepOf(rec []byte) (int64, bool) {
	var step int64
	for len(rec) > 0 {
		key, n := binary.Uvarint(rec)
		if n <= 0 {
			return 0, false
		}
		rec = rec[n:]
		field, wire := key>>3, key&7
		switch wire {
		case wireVarint:
			v, n := binary.Uvarint(rec)
			if n <= 0 {
				return 0, false
			}
			if field == eventStep {
				step = int64(v)
			}
			rec = rec[n:]
		case wireFixed64, wireFixed32:
			size := 8
			if wire == wireFixed32 {
				size = 4
			}
			if len(rec) < size {
				return 0, false
			}
			rec = rec[size:]
		case wireBytes:
			l, n := binary.Uvarint(rec)
			if n <= 0 || uint64(len(rec)-n) < l {
				return 0, false
			}
			rec = rec[n+int(l):]
		default:
			return 0, false
		}
	}
	return step, true
}
