package corpus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// readJSON reads JSON lines (one object a line, as datasets' to_json writes)
// or a JSON array of objects.
func readJSON(path string, r *bufio.Reader, column string, fn func(int64, []byte, bool) error) error {
	first, err := peekNonSpace(r)
	if err == io.EOF {
		return fmt.Errorf("%s: empty file", path)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(r)
	if first == '[' {
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	var row int64
	for {
		if first == '[' && !dec.More() {
			return nil
		}
		var obj map[string]json.RawMessage
		err := dec.Decode(&obj)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: row %d: %v", path, row, err)
		}
		raw, ok := obj[column]
		if !ok {
			present := make([]string, 0, len(obj))
			for k := range obj {
				present = append(present, k)
			}
			return columnsMissing(path, column, present)
		}
		var text *string
		if err := json.Unmarshal(raw, &text); err != nil {
			return fmt.Errorf("%s: row %d: column %q is not a string", path, row, column)
		}
		if text == nil {
			err = fn(row, nil, true)
		} else {
			err = fn(row, []byte(*text), false)
		}
		if err != nil {
			return &fatalError{err}
		}
		row++
	}
}

func peekNonSpace(r *bufio.Reader) (byte, error) {
	for {
		b, err := r.Peek(1)
		if err != nil {
			return 0, err
		}
		if bytes.IndexByte([]byte(" \t\r\n\ufeff"), b[0]) < 0 {
			return b[0], nil
		}
		if _, err := r.ReadByte(); err != nil {
			return 0, err
		}
	}
}
