package probes

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// TestHTTPClientNeverResendsARefresh: a refresh is never sent twice by the
// HTTP client. The endpoint reads the second request whole, on a connection
// kept alive from the first, and drops the connection without an answer: the
// request may have rotated the token, so the client must report the answer
// lost and leave any second try to the daemon (which knows the provider's
// rotation grace), not re-send it itself on a fresh connection.
func TestHTTPClientNeverResendsARefresh(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		io.Copy(io.Discard, r.Body)
		if n == 1 {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	p := &Prober{Client: NewHTTPClient(4, 5*time.Second)}
	ep := Endpoint{TokenURL: srv.URL, ClientID: "c", ClientSecret: "s", AuthStyle: oauth2.AuthStyleInParams}
	ctx := context.Background()
	if res := p.Refresh(ctx, ep, secret.Secret("rt-1")); !res.OK {
		t.Fatalf("first refresh: %+v", res)
	}
	res := p.Refresh(ctx, ep, secret.Secret("rt-1"))
	if res.OK || !res.Lost {
		t.Errorf("refresh whose answer never came: ok %v lost %v (%s), want a lost answer", res.OK, res.Lost, res.Cause)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("the endpoint saw %d requests, want 2: the client re-sent a refresh", n)
	}
}
