package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

func reviewClient(t *testing.T) (*Client, *Daemon) {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), `
[[providers]]
name = "acme"
preset = "google"
client_id = "x"
`)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	t.Cleanup(func() { c.Close() })
	return c, d
}

// TestReviewOddGrantIDs: every id import accepts is reachable by show and
// rm through the control API's URL paths; an id the URL paths cannot carry
// is refused at import.
func TestReviewOddGrantIDs(t *testing.T) {
	c, _ := reviewClient(t)
	ctx := context.Background()
	ids := []string{" sp ace ", "50%", "%2F", "ünïcødé", "a#b", "q?x=1", "a..b", "..", ".", "a\\b", "+&;="}
	for _, id := range ids {
		b, _ := json.Marshal(map[string]string{"id": id, "provider": "acme", "refresh_token": "rt-secret"})
		_, err := c.Import(ctx, strings.NewReader(string(b)+"\n"), nil)
		if err != nil {
			if id == "." || id == ".." {
				continue // refused at import: fine
			}
			t.Errorf("import of id %q: %v", id, err)
			continue
		}
		g, err := c.Show(ctx, id)
		if err != nil || g.ID != id {
			t.Errorf("show %q: %v (got id %q)", id, err, g.ID)
			continue
		}
		if err := c.Remove(ctx, id); err != nil {
			t.Errorf("rm %q: %v", id, err)
		}
		if _, err := c.Show(ctx, id); err == nil {
			t.Errorf("show %q after rm: no error", id)
		}
	}
}

// TestReviewForgedRedirectDoesNotDropIssuedToken: once the redirect with
// this flow's state is being exchanged (the code is spent), a stray request
// with a wrong state must not end the flow and throw the new refresh token
// away.
func TestReviewForgedRedirectDoesNotDropIssuedToken(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	cb := &callback{
		state: "good-state", provider: config.ProviderConfig{Name: "p"}, done: make(chan struct{}),
		exchange: func(code string) (*oauth2.Token, error) {
			close(entered)
			<-release
			return &oauth2.Token{AccessToken: "at", RefreshToken: "rt-NEW-SECRET"}, nil
		},
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		cb.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/callback?state=good-state&code=c1", nil))
	}()
	<-entered
	rec := httptest.NewRecorder()
	cb.ServeHTTP(rec, httptest.NewRequest("GET", "/callback?state=forged&code=c2", nil))
	close(release)
	<-served
	<-cb.done
	if cb.err != nil || cb.token.Reveal() != "rt-NEW-SECRET" {
		t.Errorf("flow ended with %v (token set: %v), want the issued token", cb.err, !cb.token.IsZero())
	}
	if rec.Code == http.StatusOK {
		t.Errorf("forged redirect answered %d", rec.Code)
	}
}

// TestReviewControlSocketFile: the socket has mode 0660 whatever the
// umask; a stale socket is replaced; a regular file at the path is refused
// and left alone.
func TestReviewControlSocketFile(t *testing.T) {
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

// TestReviewSetTokenWhileProbed: set-token on a grant a probe holds right
// now stores the token — and must then not answer as if it had failed
// (reconnect would tell the user to sign in again for nothing).
func TestReviewSetTokenWhileProbed(t *testing.T) {
	sb := reconnectSandbox(t)
	cfg := testConfig(t, t.TempDir(), sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{`{"id":"g","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Revoked) + `"}`})
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	defer c.Close()
	if !d.claim("g") { // a scheduled probe of the old token is in flight
		t.Fatal("claim")
	}
	go func() { time.Sleep(200 * time.Millisecond); d.unclaim("g") }()
	rep, err := c.SetToken(context.Background(), "g", secret.Secret(sb.Issue(sandbox.Healthy)))
	if err != nil {
		g, _ := d.DB().Get("g")
		t.Fatalf("set-token while probed: %v (grant now %s, token gen %d)", err, g.State, g.TokenGen)
	}
	if !rep.Result.OK || rep.Grant.State != store.StateHealthy {
		t.Errorf("set-token report: %+v", rep)
	}
}
