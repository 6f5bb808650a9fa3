package probes

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// NewHTTPClient returns the HTTP client the refresh probes share: one
// connection pool sized for concurrency probes in flight, so that a full
// worker pool reuses its keep-alive connections instead of dialing (and
// handshaking TLS) per probe.
//
// timeout bounds a whole request and is a backstop only: each probe's
// context carries its real deadline. concurrency < 1 counts as 1; timeout
// <= 0 means 30s.
//
// The client does not follow redirects. A token endpoint has no reason to
// redirect, and following a 307/308 would send the refresh token and the
// client secret to wherever the Location points; the 3xx answer is returned
// and classified instead.
func NewHTTPClient(concurrency int, timeout time.Duration) *http.Client {
	if concurrency < 1 {
		concurrency = 1
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dialer := &net.Dialer{
		Timeout:   min(10*time.Second, timeout),
		KeepAlive: 30 * time.Second,
	}
	tr := &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		DialContext:       dialer.DialContext,
		ForceAttemptHTTP2: true,
		// Pool at least one connection per probe in flight, per host: a
		// provider's token endpoint is one host, and all workers may be
		// probing it at once. MaxConnsPerHost keeps a runaway caller from
		// opening more than the pool would ever keep.
		MaxIdleConns:          max(100, concurrency),
		MaxIdleConnsPerHost:   concurrency,
		MaxConnsPerHost:       concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(10*time.Second, timeout),
		ResponseHeaderTimeout: timeout,
		// A token endpoint's headers are a few hundred bytes; net/http's
		// default would read 10 MiB of them per probe, ten times the
		// body cap (maxBody).
		MaxResponseHeaderBytes: maxHeader,
		ExpectContinueTimeout:  time.Second,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// maxHeader bounds the header block of an answer.
const maxHeader = 64 << 10
