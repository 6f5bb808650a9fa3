package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/peercred"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
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

// TestSecondDaemonOnSameSocketRefuses: a second daemon with another
// database but the same daemon.socket must not take over or delete the
// first one's socket (issue 12 item 4). It refuses to start, naming the
// process that holds the socket, and the first daemon stays reachable.
func TestSecondDaemonOnSameSocketRefuses(t *testing.T) {
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importGrants(t, cfg, sb, "acme", 4, sandbox.Revoked)
	first := startDaemon(t, cfg, &testutil.LogBuffer{}, nil)
	testutil.WaitFor(t, 10*time.Second, "4 grants reconnect_required", func() bool {
		return countStates(t, first.d.DB())[store.StateReconnectRequired] == 4
	})

	dir2 := t.TempDir()
	cfg2 := testConfig(t, dir2, sandboxProvider("acme", "", sb))
	cfg2.Daemon.Socket = cfg.Daemon.Socket
	second, err := Open(Options{Config: cfg2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = second.Run(ctx, func(*Daemon) { t.Error("the second daemon started on the first one's socket"); cancel() })
	if err == nil || !strings.Contains(err.Error(), "is in use") || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second daemon on the same socket: %v; want it refused, naming process %d", err, os.Getpid())
	}

	c, err := api.DialSocket(context.Background(), cfg.Daemon.Socket, 5*time.Second)
	if err != nil {
		t.Fatalf("the first daemon is unreachable after the second one's attempt: %v", err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Daemon || st.ByState[string(store.StateReconnectRequired)] != 4 {
		t.Errorf("status over the socket: daemon %v, by_state %v; want the first daemon's 4 reconnect_required", st.Daemon, st.ByState)
	}
}

// TestSocketDirWritableByOthersRefused: the daemon refuses a socket
// directory others can write to, where another user could put a socket
// that poses as the daemon (issue 13 item 6); the error names the chmod.
func TestSocketDirWritableByOthersRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o1777); err != nil { // sticky, like /tmp
		t.Fatal(err)
	}
	cfg := testConfig(t, t.TempDir(), "")
	cfg.Daemon.Socket = filepath.Join(dir, "gw.sock")
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = d.Run(ctx, func(*Daemon) { t.Error("the daemon started with its socket in a world-writable directory"); cancel() })
	if !errors.Is(err, peercred.ErrUnsafeDir) || !strings.Contains(err.Error(), "chmod go-w "+dir) {
		t.Fatalf("socket in a world-writable directory: %v; want it refused, naming chmod go-w %s", err, dir)
	}
	if _, err := os.Lstat(cfg.Daemon.Socket); err == nil {
		t.Error("a socket was created there all the same")
	}
}
