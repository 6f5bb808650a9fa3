package probes_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
)

// TestRefreshHostileEndpoints points the probe at token endpoints that
// answer with gigabytes, trickle a byte a second, or never finish: each
// probe must end within its deadline with a retry cause (a broken answer
// says nothing about the grant), read no more than the 1 MiB cap plus what
// the kernel buffers, allocate a bounded amount, and leave no goroutine
// behind.
func TestRefreshHostileEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for probe deadlines")
	}
	const (
		deadline = 1500 * time.Millisecond
		// sentCap bounds what the server gets to write before the probe
		// stops reading and closes: the 1 MiB the probe reads, plus the
		// loopback socket buffers (a few MiB when autotuned).
		sentCap = 1<<20 + 12<<20
		// allocCap bounds the probe's allocations: the capped body, with
		// growth and parsing slack.
		allocCap = 16 << 20
	)
	chunk := []byte(strings.Repeat("A", 32<<10))
	spaces := []byte(strings.Repeat(" ", 32<<10))

	// endless writes prefix, then fill until the client goes away.
	endless := func(status int, header map[string]string, prefix string, fill []byte) func(http.ResponseWriter, *http.Request, *atomic.Int64) {
		return func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			n, err := w.Write([]byte(prefix))
			sent.Add(int64(n))
			for err == nil {
				n, err = w.Write(fill)
				sent.Add(int64(n))
			}
		}
	}
	// trickle writes prefix, then one byte of fill a second.
	trickle := func(status int, prefix string) func(http.ResponseWriter, *http.Request, *atomic.Int64) {
		return func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			n, _ := w.Write([]byte(prefix))
			sent.Add(int64(n))
			w.(http.Flusher).Flush()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-r.Context().Done():
					return
				case <-tick.C:
				}
				n, err := w.Write([]byte(" "))
				sent.Add(int64(n))
				if err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}
	// stall sends a complete-looking start, then holds the body open.
	stall := func(status int, header map[string]string, body string) func(http.ResponseWriter, *http.Request, *atomic.Int64) {
		return func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			n, _ := w.Write([]byte(body))
			sent.Add(int64(n))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}
	const grantJSON = `{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-new"`
	const invalidGrant = `{"error":"invalid_grant","error_description":"Token has been expired or revoked."`
	json := map[string]string{"Content-Type": "application/json"}

	tests := []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request, *atomic.Int64)
		// quick: the size cap, not the deadline, must end the probe.
		quick bool
	}{
		// Gigabytes of text after a 200, chunked.
		{"endless 200 body", endless(http.StatusOK, json, "", chunk), true},
		// A token answer that never ends: spaces after the last field.
		{"endless 200 token", endless(http.StatusOK, json, grantJSON, spaces), true},
		// An error answer that would be a verdict if it were whole: an
		// invalid_grant cut off by the size cap is no verdict.
		{"endless 400 invalid_grant", endless(http.StatusBadRequest, json, invalidGrant, spaces), true},
		// A 10 GB Content-Length, then bytes as fast as they go.
		{"huge content-length", endless(http.StatusOK, map[string]string{
			"Content-Type": "application/json", "Content-Length": strconv.FormatInt(10<<30, 10)}, grantJSON, spaces), true},
		// Headers without end.
		{"endless headers", func(w http.ResponseWriter, r *http.Request, sent *atomic.Int64) {
			// Take over the connection to write a header block that never
			// ends, below net/http's own header handling.
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
			for i := 0; ; i++ {
				n, err := fmt.Fprintf(buf, "X-Filler-%d: %s\r\n", i, chunk[:1000])
				sent.Add(int64(n))
				if err != nil || buf.Flush() != nil {
					return
				}
			}
		}, true},
		// One byte a second after the start of a token answer.
		{"trickle 200", trickle(http.StatusOK, grantJSON), false},
		// One byte a second after the start of an invalid_grant.
		{"trickle 400", trickle(http.StatusBadRequest, invalidGrant), false},
		// A whole-looking token answer whose body never closes.
		{"never closes", stall(http.StatusOK, json, grantJSON+"}"), false},
		// An invalid_grant whose declared length is never reached.
		{"short of content-length", stall(http.StatusBadRequest, map[string]string{
			"Content-Type": "application/json", "Content-Length": "4096"}, invalidGrant+"}"), false},
		// Headers, then nothing at all.
		{"headers only", stall(http.StatusOK, json, ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int64
			handlerDone := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { handlerDone <- struct{}{} }()
				tt.handler(w, r, &sent)
			}))
			client := probes.NewHTTPClient(2, 10*time.Second)
			p := &probes.Prober{Client: client}
			ep := probes.Endpoint{
				TokenURL: srv.URL + "/token", ClientID: "c", ClientSecret: "s",
				AuthStyle: oauth2.AuthStyleInParams,
			}
			before := runtime.NumGoroutine()

			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			start := time.Now()
			res := p.Refresh(ctx, ep, secret.Secret("rt-hostile"))
			took := time.Since(start)
			cancel()
			runtime.ReadMemStats(&ms1)

			if res.OK || !res.Cause.Retryable() {
				t.Errorf("result OK=%v cause %s (%s), want a retry cause", res.OK, res.Cause, res.Rule)
			}
			if !res.NewRefreshToken.IsZero() {
				t.Error("a token was taken from an answer that never completed")
			}
			if took > deadline+500*time.Millisecond {
				t.Errorf("probe took %s, deadline %s", took, deadline)
			}
			if tt.quick && took > deadline/2 {
				t.Errorf("probe took %s: the size cap should end it, not the deadline", took)
			}
			if a := ms1.TotalAlloc - ms0.TotalAlloc; a > allocCap {
				t.Errorf("probe allocated %d MiB, want < %d MiB", a>>20, allocCap>>20)
			}

			// The server's writer must stop: the probe closed the
			// connection instead of draining gigabytes.
			select {
			case <-handlerDone:
			case <-time.After(5 * time.Second):
				t.Fatalf("the endpoint is still sending (%d MiB so far): the probe did not close the connection", sent.Load()>>20)
			}
			if n := sent.Load(); n > sentCap {
				t.Errorf("the endpoint got to send %d MiB, want at most %d MiB", n>>20, sentCap>>20)
			}
			t.Logf("%s: cause %s (%s) after %s, %d KiB sent, %d KiB allocated", tt.name, res.Cause, res.Rule,
				took.Round(time.Millisecond), sent.Load()>>10, (ms1.TotalAlloc-ms0.TotalAlloc)>>10)

			srv.CloseClientConnections()
			srv.Close()
			client.CloseIdleConnections()
			// Goroutines of the probe (transport readers and writers)
			// must be gone once the server is.
			settle := time.Now().Add(3 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(settle) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines before the probe, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}
