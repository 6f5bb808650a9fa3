package bench

// grantwatch bench --broker: apps fetching held access tokens from the
// broker over loopback HTTPS with keep-alive, the broker's hot path.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	"os"
	"path/filepath"
	"runtime"
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
// latency the clients see.
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

	var (
		lat      latencyHist
		done     atomic.Int64
		failed   atomic.Int64
		maxUS    atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	mctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	provider0 := sb.Stats().Requests
	cpu0, start := cpuTime(), time.Now()
	for i := range o.Clients {
		wg.Go(func() {
			var get func(path string) (int, error)
			if o.NetHTTP {
				hc, tr := newClient()
				defer tr.CloseIdleConnections()
				get = func(path string) (int, error) { return fetch(hc, path) }
			} else {
				rc := &rawClient{addr: d.ListenAddr(), conf: &tls.Config{RootCAs: pool}, key: key}
				defer rc.close()
				get = rc.get
			}
			for n := i; mctx.Err() == nil; n += o.Clients {
				t0 := time.Now()
				code, err := get(paths[n%len(paths)])
				if mctx.Err() != nil {
					return // cut by the end of the run: not counted
				}
				el := time.Since(t0)
				if err != nil || code != http.StatusOK {
					failed.Add(1)
					errOnce.Do(func() { firstErr = fmt.Errorf("token request: %d %v", code, err) })
					continue
				}
				lat.add(el)
				done.Add(1)
				for us := el.Microseconds(); us > maxUS.Load() && !maxUS.CompareAndSwap(maxUS.Load(), us); {
				}
			}
		})
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for mctx.Err() == nil {
		select {
		case <-tick.C:
			pr.printf("broker: %d clients, %d tokens, %.0f/s", o.Clients, done.Load(), float64(done.Load())/time.Since(start).Seconds())
		case <-mctx.Done():
		}
	}
	wg.Wait()
	el := time.Since(start)
	res.DurationS = el.Seconds()
	res.Requests, res.Errors = done.Load(), failed.Load()
	res.PerSec = float64(res.Requests) / el.Seconds()
	res.P50Ms, res.P99Ms = lat.quantile(0.50), lat.quantile(0.99)
	res.MaxMs = float64(maxUS.Load()) / 1000
	cpu := cpuTime() - cpu0
	res.CPUPercent = 100 * cpu.Seconds() / el.Seconds()
	if res.Requests > 0 {
		res.CPUMicrosPerRequest = float64(cpu.Microseconds()) / float64(res.Requests)
	}
	res.ProviderRequests = sb.Stats().Requests - provider0
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if res.Requests == 0 && firstErr != nil {
		return res, firstErr
	}
	return res, nil
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
// it writes a GET and reads its answer, with no goroutine or channel of its
// own (net/http's Transport has two of each per connection).
type rawClient struct {
	addr, key string
	conf      *tls.Config
	conn      *tls.Conn
	br        *bufio.Reader
	req       []byte
}

func (c *rawClient) get(url string) (int, error) {
	if c.conn == nil {
		conn, err := tls.Dial("tcp", c.addr, c.conf)
		if err != nil {
			return 0, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	path := url[strings.Index(url[len("https://"):], "/")+len("https://"):]
	c.req = append(c.req[:0], "GET "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.addr...)
	c.req = append(c.req, "\r\nAuthorization: Bearer "...)
	c.req = append(c.req, c.key...)
	c.req = append(c.req, "\r\n\r\n"...)
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return resp.StatusCode, err
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
