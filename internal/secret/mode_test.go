package secret

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSecret writes a file with exactly mode (no umask).
func writeSecret(t *testing.T, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grantwatch.key")
	if err := os.WriteFile(path, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckMode(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want string // "" for nil, else a substring of the error
	}{
		{0o600, ""},
		{0o400, ""},
		{0o700, ""}, // execute bits do not open a secret
		{0o610, ""},
		{0o640, "permissions 0640 for PATH are too open: its group may read or write it"},
		{0o620, "its group may read or write it"}, // a writer can substitute a key they know
		{0o644, "its group and others may read or write it"},
		{0o604, "permissions 0604 for PATH are too open: others may"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := writeSecret(t, tt.mode)
			err := CheckMode(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckMode(%04o) = %v, want nil", tt.mode, err)
				}
				return
			}
			var me *ModeError
			if !errors.As(err, &me) || me.Path != path || me.Mode != tt.mode {
				t.Fatalf("CheckMode(%04o) = %#v, want a *ModeError for %s", tt.mode, err, path)
			}
			for _, want := range []string{strings.ReplaceAll(tt.want, "PATH", path), "run chmod 600 " + path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestCheckModeMissing(t *testing.T) {
	if err := CheckMode(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("CheckMode(missing) = %v, want fs.ErrNotExist", err)
	}
}
