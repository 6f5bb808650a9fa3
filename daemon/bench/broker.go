package bench

// grantwatch bench --broker: apps fetching held access tokens from the
// broker over loopback HTTPS with keep-alive, the broker's hot path.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grantwatch/grantwatch/daemon"
	"github.com/grantwatch/grantwatch/daemon/api"
)

// BrokerOptions configures RunBroker. Zero values select the defaults noted
// per field.
type BrokerOptions struct {
	// Grants is how many grants the clients fetch tokens of, round-robin.
	// Default 100.
	Grants int
	// Clients is how many concurrent clients there are, each on its own
	// keep-alive HTTPS connection (HTTP/1.1). Default 64.
	Clients int
	// Duration is how long they fetch. Default 10s.
	Duration time.Duration
	// NetHTTP makes the clients net/http's (a Transport each) instead of
	// a minimal HTTP/1.1 client on crypto/tls. The clients share the cores
	// with the daemon, and net/http's costs about as much CPU a request as
	// the daemon does: the minimal client leaves the cores to the daemon,
	// as clients on other hosts would.
	NetHTTP bool
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// Progress receives one status line, rewritten in place; nil prints
	// nothing.
	Progress io.Writer
}

// BrokerResult is what RunBroker measured. The JSON names are part of
// grantwatch's interface (`grantwatch bench --broker --json`).
type BrokerResult struct {
	Grants  int `json:"grants"`
	Clients int `json:"clients"`
	// Client is "minimal" or "net/http" (BrokerOptions.NetHTTP).
	Client     string  `json:"client"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	Load1      float64 `json:"load1"`
	DurationS  float64 `json:"duration_s"`
	// Requests counts the answered token requests, PerSec per second.
	Requests int64   `json:"requests"`
	PerSec   float64 `json:"requests_per_sec"`
	// P50Ms, P99Ms and MaxMs are the requests' times, from sending to the
	// answer read, at the client.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// CeilingPerSec, CeilingP50Ms, CeilingP99Ms and CeilingMaxMs are the
	// same clients' figures against net/http serving a fixed answer on
	// the same certificate (no grantwatch), measured in two halves right
	// before and right after the broker's run; Ratio is PerSec over
	// CeilingPerSec.
	CeilingPerSec float64 `json:"ceiling_requests_per_sec"`
	CeilingP50Ms  float64 `json:"ceiling_p50_ms"`
	CeilingP99Ms  float64 `json:"ceiling_p99_ms"`
	CeilingMaxMs  float64 `json:"ceiling_max_ms"`
	Ratio         float64 `json:"ratio"`
	// Errors counts answers other than 200, and failed requests.
	Errors int64 `json:"errors"`
	// ProviderRequests counts the refreshes sent to the token endpoint
	// while the clients fetched: 0, as every token is held.
	ProviderRequests int64 `json:"provider_requests"`
	// CPUPercent is the process's CPU (daemon, clients and the sandbox on
	// the same cores) in % of one core; CPUMicrosPerRequest the same per
	// request, which other load on the machine changes less than the rate.
	CPUPercent          float64 `json:"cpu_pct"`
	CPUMicrosPerRequest float64 `json:"cpu_us_per_request"`
}

// RunBroker runs a daemon with daemon.listen on 127.0.0.1 over TLS (a
// certificate made for the run) against an in-process sandbox, imports
// o.Grants grants, fetches each one's token once (so each is held), then
// has o.Clients clients fetch tokens (GET /v1/grants/{id}/token, an app
// key with scope token) for o.Duration and measures the rate and the
// latency the clients see, and the same against a bare net/http server
// (the ceiling) for o.Duration/4 before and after.
func RunBroker(ctx context.Context, o BrokerOptions) (BrokerResult, error) {
	if o.Grants <= 0 {
		o.Grants = 100
	}
	if o.Clients <= 0 {
		o.Clients = 64
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pr := newProgress(o.Progress)
	defer pr.done()
	res := BrokerResult{Grants: o.Grants, Clients: o.Clients, Client: "minimal", GOMAXPROCS: runtime.GOMAXPROCS(0), Load1: load1()}
	if o.NetHTTP {
		res.Client = "net/http"
	}

	dir, err := os.MkdirTemp("", "grantwatch-bench-broker-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	pool, err := benchCertificate(dir)
	if err != nil {
		return res, err
	}
	sb, err := benchSandbox()
	if err != nil {
		return res, err
	}
	defer sb.Close()

	cfg, err := benchConfig(dir, sb.TokenURL(), 16, "")
	if err != nil {
		return res, err
	}
	cfg.Daemon.Listen = "127.0.0.1:0"
	cfg.Daemon.MaxConnections = o.Clients + 64
	cfg.Daemon.TLSCertFile, cfg.Daemon.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	d, err := daemon.Open(daemon.Options{Config: cfg, Logger: log})
	if err != nil {
		return res, err
	}
	c := daemon.InProcess(d, false)
	_, err = c.Import(ctx, benchJSONL(o.Grants), api.ImportOptions{}, nil)
	c.Close()
	if err != nil {
		d.Close()
		return res, fmt.Errorf("import: %w", err)
	}
	_, key, err := d.CreateKey(api.Key{Name: "bench", Scopes: []api.Scope{api.ScopeToken}})
	if err != nil {
		d.Close()
		return res, err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan struct{})
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx, func(*daemon.Daemon) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-runErr:
		return res, fmt.Errorf("daemon: %w", err)
	}
	defer func() { stop(); <-runErr }()

	base := "https://" + d.ListenAddr() + "/v1/grants/"
	paths := make([]string, o.Grants)
	for i := range paths {
		paths[i] = base + string(appendBenchID(nil, i)) + "/token"
	}
	newClient := func() (*http.Client, *http.Transport) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: false}
		return &http.Client{Transport: tr}, tr
	}
	fetch := func(hc *http.Client, url string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, err
	}

	// Every grant's token is held before the clients start.
	warm, wtr := newClient()
	for i, p := range paths {
		if code, err := fetch(warm, p); err != nil || code != http.StatusOK {
			wtr.CloseIdleConnections()
			return res, fmt.Errorf("first token of grant %d: %d %v", i, code, err)
		}
		pr.printf("broker: %d of %d tokens held", i+1, o.Grants)
	}
	wtr.CloseIdleConnections()

	newGet := func() (func(string) (int, error), func()) {
		if o.NetHTTP {
			hc, tr := newClient()
			return func(path string) (int, error) { return fetch(hc, path) }, tr.CloseIdleConnections
		}
		rc := &rawClient{conf: &tls.Config{RootCAs: pool}, key: key}
		return rc.get, rc.close
	}

	// The ceiling: the same clients against a net/http server on the same
	// certificate answering every request with a token-sized answer and
	// nothing else, in two halves around the broker's run, so that a
	// machine whose speed drifts weighs on both figures alike.
	ceil, err := startCeiling(dir, key)
	if err != nil {
		return res, err
	}
	defer ceil.Close()
	ceilPaths := make([]string, len(paths))
	for i, p := range paths {
		ceilPaths[i] = strings.Replace(p, d.ListenAddr(), ceil.Listener.Addr().String(), 1)
	}
	var ceilRun clientRun
	if err := ceilRun.drive(ctx, o.Clients, o.Duration/4, ceilPaths, newGet, pr, "ceiling (1 of 2)"); err != nil {
		return res, fmt.Errorf("ceiling: %w", err)
	}

	var run clientRun
	provider0 := sb.Stats().Requests
	err = run.drive(ctx, o.Clients, o.Duration, paths, newGet, pr, "broker")
	res.ProviderRequests = sb.Stats().Requests - provider0
	if err != nil {
		return res, err
	}
	if err := ceilRun.drive(ctx, o.Clients, o.Duration/4, ceilPaths, newGet, pr, "ceiling (2 of 2)"); err != nil {
		return res, fmt.Errorf("ceiling: %w", err)
	}
	res.DurationS = run.el.Seconds()
	res.Requests, res.Errors = run.done.Load(), run.failed.Load()
	res.PerSec, res.P50Ms, res.P99Ms, res.MaxMs = run.figures()
	res.CPUPercent = 100 * run.cpu.Seconds() / run.el.Seconds()
	if res.Requests > 0 {
		res.CPUMicrosPerRequest = float64(run.cpu.Microseconds()) / float64(res.Requests)
	}
	res.CeilingPerSec, res.CeilingP50Ms, res.CeilingP99Ms, res.CeilingMaxMs = ceilRun.figures()
	if res.CeilingPerSec > 0 {
		res.Ratio = res.PerSec / res.CeilingPerSec
	}
	return res, nil
}

// clientRun is what the clients measured, over one or more drives.
type clientRun struct {
	lat                 latencyHist
	done, failed, maxUS atomic.Int64
	el, cpu             time.Duration
}

// drive has clients clients fetch paths round-robin, each on its own
// connection (newGet makes a client: its request function and its
// close), for dur, and adds what they measured to r. It fails only if no
// request was answered.
func (r *clientRun) drive(ctx context.Context, clients int, dur time.Duration, paths []string,
	newGet func() (func(string) (int, error), func()), pr *progress, what string) error {
	var (
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
		done0    = r.done.Load()
	)
	mctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	cpu0, start := cpuTime(), time.Now()
	for i := range clients {
		wg.Go(func() {
			get, closeConn := newGet()
			defer closeConn()
			for n := i; mctx.Err() == nil; n += clients {
				t0 := time.Now()
				code, err := get(paths[n%len(paths)])
				if mctx.Err() != nil {
					return // cut by the end of the run: not counted
				}
				el := time.Since(t0)
				if err != nil || code != http.StatusOK {
					r.failed.Add(1)
					errOnce.Do(func() { firstErr = fmt.Errorf("token request: %d %v", code, err) })
					continue
				}
				r.lat.add(el)
				r.done.Add(1)
				for us := el.Microseconds(); us > r.maxUS.Load() && !r.maxUS.CompareAndSwap(r.maxUS.Load(), us); {
				}
			}
		})
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for mctx.Err() == nil {
		select {
		case <-tick.C:
			n := r.done.Load() - done0
			pr.printf("%s: %d clients, %d tokens, %.0f/s", what, clients, n, float64(n)/time.Since(start).Seconds())
		case <-mctx.Done():
		}
	}
	wg.Wait()
	r.el += time.Since(start)
	r.cpu += cpuTime() - cpu0
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if r.done.Load() == done0 && firstErr != nil {
		return firstErr
	}
	return nil
}

// figures are the run's requests/s and its latency quantiles and maximum
// in milliseconds.
func (r *clientRun) figures() (perSec, p50, p99, maxMs float64) {
	if r.el > 0 {
		perSec = float64(r.done.Load()) / r.el.Seconds()
	}
	return perSec, r.lat.quantile(0.50), r.lat.quantile(0.99), float64(r.maxUS.Load()) / 1000
}

// startCeiling serves the bench's certificate (in dir) on 127.0.0.1 with
// net/http and a handler that checks the app key and answers a fixed
// token-sized body with the broker's headers: what net/http and TLS cost
// on this machine with no grantwatch in between.
func startCeiling(dir, key string) (*httptest.Server, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, err
	}
	want := "Bearer " + key
	body := []byte(`{"access_token":"` + strings.Repeat("x", 64) + `","token_type":"Bearer","expires_at":"2026-01-01T00:00:00Z","scope":"mail.read","grant_id":"g-0000001"}` + "\n")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Cache-Control"] = []string{"no-store"}
		w.Write(body)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	return srv, nil
}

// benchCertificate writes a self-signed certificate for 127.0.0.1 and its
// key into dir (tls.crt, tls.key) and returns a pool that trusts it.
func benchCertificate(dir string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "grantwatch bench"},
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(
		os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600),
	); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}

// rawClient is a minimal HTTP/1.1 client on one keep-alive TLS connection:
// it writes a GET and reads its answer in place, with no goroutine or
// channel of its own (net/http's Transport has two of each per connection)
// and no allocation, so that it leaves the cores to the daemon as clients
// on other hosts would.
type rawClient struct {
	key  string
	conf *tls.Config
	conn *tls.Conn
	br   *bufio.Reader
	req  []byte
}

func (c *rawClient) get(url string) (int, error) {
	host, path, _ := strings.Cut(strings.TrimPrefix(url, "https://"), "/")
	if c.conn == nil {
		conn, err := tls.Dial("tcp", host, c.conf)
		if err != nil {
			return 0, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	c.req = append(c.req[:0], "GET /"...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, host...)
	c.req = append(c.req, "\r\nAuthorization: Bearer "...)
	c.req = append(c.req, c.key...)
	c.req = append(c.req, "\r\n\r\n"...)
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return 0, err
	}
	code, err := c.readResponse()
	if err != nil {
		c.close()
		return 0, err
	}
	return code, nil
}

// readResponse reads an HTTP/1.1 answer with a Content-Length and returns
// its status, without allocating: the status line and headers are read in
// place and the body is discarded. A "Connection: close" closes the
// connection after it.
func (c *rawClient) readResponse() (int, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("malformed status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("malformed status line %q", line)
	}
	length, closing := -1, false
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("malformed header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, fmt.Errorf("malformed Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, err
	}
	if closing {
		c.close()
	}
	return code, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
