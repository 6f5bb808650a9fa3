package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/testutil"
)

// TestReconnectOnChosenPort: reconnect --port listens for the sign-in's
// redirect on that port of 127.0.0.1, so that ssh -L can forward it before
// the flow starts; the new token is stored and probed (issue 12 item 15).
func TestReconnectOnChosenPort(t *testing.T) {
	s := newCLISetup(t, "")
	b, _ := os.ReadFile(s.cfgPath)
	os.WriteFile(s.cfgPath, []byte(strings.Replace(string(b), `interval = "1h"`, fmt.Sprintf("interval = \"1h\"\nauth_url = %q", s.sb.AuthURL()), 1)), 0o600)
	addr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")

	var out testutil.LogBuffer
	errw := &testutil.LogBuffer{}
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		root := newRoot(strings.NewReader(""), &out, errw)
		root.SetArgs([]string{"--config", s.cfgPath, "reconnect", "g2", "--port", port, "--no-browser"})
		done <- root.ExecuteContext(ctx)
	}()
	var authURL string
	waitUntil(t, func() bool {
		sc := bufio.NewScanner(strings.NewReader(errw.String()))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "http") {
				authURL = l
			}
		}
		return authURL != ""
	})
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.Query().Get("redirect_uri"), "http://127.0.0.1:"+port+"/callback"; got != want {
		t.Errorf("redirect_uri %q, want %q", got, want)
	}
	// The browser: the sandbox consents at once and redirects to the port.
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatalf("reconnect: %v\n%s", err, errw.String())
	}
	if got := out.String(); !strings.Contains(got, "new refresh token stored") || !strings.Contains(got, "probe ok") {
		t.Errorf("reconnect output:\n%s", got)
	}
}
