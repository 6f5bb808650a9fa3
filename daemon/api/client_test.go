package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/peercred"
	"github.com/grantwatch/grantwatch/internal/secret"
)

// fakeDaemon serves the control API's ping on a unix socket at path and
// counts every request that reaches it.
func fakeDaemon(t *testing.T, path string) *atomic.Int64 {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Write([]byte(`{"ok":true}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &requests
}

// TestSocketClientTrustsOnlyASafeSocket: with daemon.socket in a directory
// others can write to, a process of another user could serve it and
// receive the refresh token `grants set-token` sends (issue 13 item 6).
// The client refuses before it sends anything; in a directory only its
// owner can write, the same server is reached.
func TestSocketClientTrustsOnlyASafeSocket(t *testing.T) {
	ctx := context.Background()
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o1777); err != nil { // sticky, like /tmp
		t.Fatal(err)
	}
	path := filepath.Join(shared, "gw.sock")
	requests := fakeDaemon(t, path)

	if c, err := DialSocket(ctx, path, time.Second); !errors.Is(err, peercred.ErrUnsafeDir) {
		if c != nil {
			c.Close()
		}
		t.Errorf("DialSocket in a world-writable directory: %v; want ErrUnsafeDir", err)
	}
	c := SocketClient(path, time.Second)
	defer c.Close()
	if _, err := c.SetToken(ctx, "g", secret.Secret("rt_must_not_reach_the_fake")); !errors.Is(err, peercred.ErrUnsafeDir) {
		t.Errorf("SetToken through a world-writable directory: %v; want ErrUnsafeDir", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the server in the world-writable directory got %d request(s)", n)
	}

	// The control: a directory only this user can write.
	private := filepath.Join(t.TempDir(), "private.sock")
	requests = fakeDaemon(t, private)
	c2, err := DialSocket(ctx, private, time.Second)
	if err != nil {
		t.Fatalf("DialSocket in a private directory: %v", err)
	}
	c2.Close()
	if requests.Load() != 1 {
		t.Errorf("the server in the private directory got %d request(s), want the ping", requests.Load())
	}
}
