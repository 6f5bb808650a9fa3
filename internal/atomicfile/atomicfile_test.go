package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestWrite: the file appears whole with mode 0600; a fill that fails
// leaves the former file as it was and no temporary file behind.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	os.WriteFile(path, []byte("old"), 0o644)
	err := Write(path, func(f *os.File) error {
		f.WriteString("half")
		return errors.New("the source went away")
	})
	if b, _ := os.ReadFile(path); err == nil || string(b) != "old" {
		t.Fatalf("a failed write: %v, file holds %q, want the old content", err, b)
	}
	if err := Write(path, func(f *os.File) error { _, err := f.WriteString("new"); return err }); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("file holds %q with mode %v, want \"new\" and 0600", b, fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the directory, want only the one written", len(ents))
	}
}
