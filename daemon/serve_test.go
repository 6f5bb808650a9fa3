package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestControlSocketFile: the socket has mode 0660 whatever the
// umask; a stale socket is replaced; a regular file at the path is refused
// and left alone.
func TestControlSocketFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "gw.sock")
	old := syscall.Umask(0)
	ln, err := listenSocket(path)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	// A stale socket (the listener gone without unlinking it).
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = listenSocket(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	reg := filepath.Join(dir, "file.sock")
	os.WriteFile(reg, []byte("keep"), 0o600)
	if _, err := listenSocket(reg); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file at the socket path: %v", err)
	}
	if b, _ := os.ReadFile(reg); string(b) != "keep" {
		t.Error("the regular file was touched")
	}
}
