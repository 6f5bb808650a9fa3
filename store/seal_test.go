package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grantwatch.key")
	if _, err := LoadKey(path, false); err == nil {
		t.Error("LoadKey(missing, create=false): nil error")
	}
	k1, err := LoadKey(path, true)
	if err != nil || len(k1) != KeySize {
		t.Fatalf("LoadKey(create) = %d bytes, %v", len(k1), err)
	}
	if mode, err := KeyFileMode(path); err != nil || mode != 0o600 {
		t.Errorf("KeyFileMode = %o, %v; want 600", mode, err)
	}
	k2, err := LoadKey(path, true)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second LoadKey returned another key (%v)", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".grantwatch-key-*")); len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}

	raw := bytes.Repeat([]byte{0xab}, KeySize)
	tests := []struct {
		name    string
		content string
		wantErr bool
	}{
		{"raw 32 bytes", string(raw), false},
		{"hex with newline", "abababababababababababababababababababababababababababababababab\n", false},
		{"base64", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", false},
		{"base64 unpadded, spaces", "  q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s \n", false},
		{"16 bytes of base64", "q6urq6urq6urq6urq6urqw==", true},
		{"31 raw bytes", string(raw[:31]), true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "k")
			os.WriteFile(p, []byte(tt.content), 0o600)
			k, err := LoadKey(p, true)
			if tt.wantErr {
				if !errors.Is(err, errKeySize) {
					t.Errorf("LoadKey = %v, want a key size error", err)
				}
				if got, _ := os.ReadFile(p); string(got) != tt.content {
					t.Error("a bad key file was overwritten")
				}
				return
			}
			if err != nil || !bytes.Equal(k, raw) {
				t.Errorf("LoadKey = %x, %v; want %x", k, err, raw)
			}
		})
	}
}
