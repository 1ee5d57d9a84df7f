package mmapfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestOpen: mapped and read files give the same bytes; small, empty and
// missing files behave.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("clm mmap "), 1000)
	cases := []struct {
		name    string
		content []byte
		minMap  int64
	}{
		{"mapped", big, 8},
		{"below minMap: read", []byte("short"), 8},
		{"empty", nil, 0},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, c.content, 0o644); err != nil {
			t.Fatal(err)
		}
		b, release, err := Open(path, c.minMap)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(b, c.content) {
			t.Errorf("%s: %d bytes, want %d", c.name, len(b), len(c.content))
		}
		if err := release(); err != nil {
			t.Errorf("%s: release: %v", c.name, err)
		}
	}
	if _, _, err := Open(filepath.Join(dir, "missing"), 0); err == nil {
		t.Error("a missing file opened")
	}
}
