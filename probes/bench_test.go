package probes_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// benchParallelism goroutines per GOMAXPROCS: enough requests in flight to
// keep the loopback busy, as a worker pool would.
const benchParallelism = 4

func benchClient() *http.Client {
	return probes.NewHTTPClient(benchParallelism*runtime.GOMAXPROCS(0), 10*time.Second)
}

// BenchmarkRefresh measures one refresh probe (x/oauth2, the recording
// transport, classification) against the sandbox over loopback, many in
// parallel on the tuned shared client. Compare with BenchmarkBareClient:
//
//	go test -run '^$' -bench . -benchtime 3s ./probes/
func BenchmarkRefresh(b *testing.B) {
	s := startSandbox(b)
	s.Add("rt-bench", sandbox.Healthy)
	p := &probes.Prober{Client: benchClient()}
	ep := endpoint(s, "")
	token := secret.Secret("rt-bench")
	ctx := context.Background()

	b.ReportAllocs()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			res := p.Refresh(pctx, ep, token)
			cancel()
			if !res.OK {
				b.Errorf("refresh: cause %q rule %q", res.Cause, res.Rule)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "probes/s")
	b.ReportMetric(float64(s.Stats().MaxConcurrent), "max-concurrent")
}

// BenchmarkBareClient is the ceiling for BenchmarkRefresh: the same form
// POSTed to the same sandbox with the same client, read and discarded, with
// no x/oauth2, no recording and no classification.
func BenchmarkBareClient(b *testing.B) {
	s := startSandbox(b)
	s.Add("rt-bench", sandbox.Healthy)
	hc := benchClient()
	body := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {"rt-bench"},
	}.Encode()
	tokenURL := s.TokenURL()

	b.ReportAllocs()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("grantwatch", "client-secret-value")
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "probes/s")
}
