package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
)

// provider checks p's token endpoint step by step: DNS, TCP, TLS (https
// only) and an HTTP answer. A step that fails ends the chain; later steps
// are left out. No refresh token and no client credentials are sent.
func (d *doctor) provider(ctx context.Context, p config.ProviderConfig) []Check {
	prefix := "provider/" + p.Name + "/"
	if p.Observe() {
		// Its app refreshes the grants: grantwatch's own reach of the
		// endpoint does not matter, and it may have no token_url at all.
		return []Check{{Name: prefix + "mode", Status: CheckOK,
			Detail: "observe mode: grantwatch never sends this provider a request; its app reports each refresh"}}
	}
	u, err := url.Parse(p.TokenURL)
	if err != nil || u.Host == "" {
		// validate refuses this; kept so that Doctor never panics.
		return []Check{{Name: prefix + "http", Status: CheckFail, Detail: "token_url is not a URL",
			Fix: fmt.Sprintf("correct providers.%s.token_url", p.Name)}}
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	addr := net.JoinHostPort(host, port)
	var out []Check
	if p.ClientSecretFile != "" {
		// Read as the daemon would at start; the secret itself is never shown.
		c := Check{Name: prefix + "secret", Status: CheckOK, Detail: "client_secret_file " + p.ClientSecretFile + " is readable"}
		if _, err := p.Endpoint(); err != nil {
			c.Status, c.Detail = CheckFail, err.Error()
			c.Fix = fileFix(err, p.ClientSecretFile, "providers."+p.Name+".client_secret_file") + " (the daemon reads it at start and on reload)"
		}
		out = append(out, c)
	}

	req, _ := http.NewRequest(http.MethodPost, p.TokenURL, nil)
	proxy, perr := http.ProxyFromEnvironment(req)
	if perr == nil && proxy != nil {
		// Direct DNS/TCP/TLS would test a path the probes do not take.
		out = append(out, Check{Name: prefix + "proxy", Status: CheckOK,
			Detail: fmt.Sprintf("requests to %s go through the proxy %s ($HTTPS_PROXY/$HTTP_PROXY); DNS, TCP and TLS are checked through it", u.Host, proxy.Host)})
		return append(out, d.httpAnswer(ctx, p, prefix, true)...)
	}

	// DNS.
	dns := Check{Name: prefix + "dns"}
	if ip := net.ParseIP(host); ip != nil {
		dns.Status, dns.Detail = CheckOK, fmt.Sprintf("%s is an IP address, no lookup needed", host)
	} else {
		cctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		start := time.Now()
		addrs, err := net.DefaultResolver.LookupHost(cctx, host)
		cancel()
		if err != nil {
			dns.Status = CheckFail
			dns.Detail = fmt.Sprintf("cannot resolve %s: %v", host, dnsReason(err))
			dns.Fix = fmt.Sprintf("check this host's resolver (/etc/resolv.conf, resolvectl status) and the spelling of providers.%s.token_url", p.Name)
			return append(out, dns)
		}
		dns.Status = CheckOK
		dns.Detail = fmt.Sprintf("%s resolves to %s in %s", host, strings.Join(first(addrs, 4), ", "), ms(time.Since(start)))
	}
	out = append(out, dns)

	// TCP.
	tcp := Check{Name: prefix + "tcp"}
	cctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	var dialer net.Dialer
	start := time.Now()
	conn, err := dialer.DialContext(cctx, "tcp", addr)
	if err != nil {
		tcp.Status = CheckFail
		tcp.Detail = fmt.Sprintf("cannot connect to %s: %v", addr, unwrapOp(err))
		tcp.Fix = fmt.Sprintf("check that %s is reachable from this host (firewall, egress rules, a proxy in $HTTPS_PROXY) and that providers.%s.token_url is right", addr, p.Name)
		return append(out, tcp)
	}
	tcp.Status = CheckOK
	tcp.Detail = fmt.Sprintf("connected to %s in %s", conn.RemoteAddr(), ms(time.Since(start)))
	out = append(out, tcp)

	// TLS.
	if u.Scheme == "https" {
		tc := tls.Client(conn, d.tlsConfig(host))
		err := tc.HandshakeContext(cctx)
		tc.Close()
		c := d.certCheck(prefix+"tls", p.Name, host, tc.ConnectionState(), err)
		out = append(out, c)
		if c.Status == CheckFail {
			return out
		}
	} else {
		conn.Close()
	}
	return append(out, d.httpAnswer(ctx, p, prefix, false)...)
}

func (d *doctor) tlsConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, RootCAs: d.opts.RootCAs, MinVersion: tls.VersionTLS12, Time: d.opts.Now}
}

// certCheck judges a TLS handshake: trust, hostname, validity and days left.
func (d *doctor) certCheck(name, prov, host string, cs tls.ConnectionState, err error) Check {
	c := Check{Name: name}
	now := d.opts.Now()
	var leaf *x509.Certificate
	if len(cs.PeerCertificates) > 0 {
		leaf = cs.PeerCertificates[0]
	}
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) {
		cve = nil
	}
	if leaf == nil && cve != nil && len(cve.UnverifiedCertificates) > 0 {
		leaf = cve.UnverifiedCertificates[0]
	}
	desc := ""
	if leaf != nil {
		days := int(leaf.NotAfter.Sub(now).Hours() / 24)
		desc = fmt.Sprintf("certificate for %s issued by %s, valid until %s (%d days left)",
			certSubject(leaf), certIssuer(leaf), leaf.NotAfter.UTC().Format(time.DateOnly), days)
		if now.After(leaf.NotAfter) {
			desc = fmt.Sprintf("certificate for %s issued by %s expired on %s",
				certSubject(leaf), certIssuer(leaf), leaf.NotAfter.UTC().Format(time.DateOnly))
		}
	}
	if err != nil {
		c.Status = CheckFail
		var inv x509.CertificateInvalidError
		var hn x509.HostnameError
		var ua x509.UnknownAuthorityError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			c.Detail = "TLS handshake refused: " + orText(desc, err.Error())
			c.Fix = fmt.Sprintf("the endpoint's certificate is expired: confirm providers.%s.token_url is the provider's endpoint; if it is (or it is your proxy), its operator must renew the certificate", prov)
		case errors.As(err, &hn):
			c.Detail = fmt.Sprintf("TLS handshake refused: %v", hn.Error())
			c.Fix = fmt.Sprintf("correct the host in providers.%s.token_url, or fix the proxy that answers for it", prov)
		case errors.As(err, &ua):
			c.Detail = fmt.Sprintf("certificate not trusted (signed by an unknown authority): %s", orText(desc, err.Error()))
			c.Fix = "install the issuing CA in this host's trust store (for a TLS-inspecting proxy, its CA), or correct the token_url"
		case leaf != nil && cve != nil:
			c.Detail = fmt.Sprintf("certificate not trusted: %v; %s", cve.Err, desc)
			c.Fix = "install the issuing CA in this host's trust store, or correct the token_url"
		default:
			c.Detail = fmt.Sprintf("TLS handshake with %s failed: %v", host, unwrapOp(err))
			c.Fix = fmt.Sprintf("check that providers.%s.token_url speaks https on that port and that nothing intercepts TLS", prov)
		}
		return c
	}
	if leaf == nil {
		c.Status, c.Detail = CheckOK, fmt.Sprintf("TLS %s with %s", tls.VersionName(cs.Version), host)
		return c
	}
	c.Detail = fmt.Sprintf("%s, %s", tls.VersionName(cs.Version), desc)
	left := leaf.NotAfter.Sub(now)
	if left < certWarnDays*24*time.Hour {
		c.Status = CheckWarn
		c.Fix = "the endpoint's certificate expires soon: if it is your proxy, renew its certificate; if it is the provider's, expect them to renew it and check again"
		return c
	}
	c.Status = CheckOK
	return c
}

func certSubject(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return "(no name)"
}

func certIssuer(c *x509.Certificate) string {
	switch {
	case c.Issuer.CommonName != "":
		return "CN=" + c.Issuer.CommonName
	case len(c.Issuer.Organization) > 0:
		return "O=" + c.Issuer.Organization[0]
	}
	return "(unnamed issuer)"
}

func orText(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// httpAnswer POSTs grant_type=refresh_token with no refresh token and no
// client credentials: the endpoint can only refuse it (invalid_request,
// invalid_client), so no grant is spent and no rotation is triggered.
// Any HTTP answer proves the endpoint reachable. With viaProxy, TLS is
// judged from this request (there is no direct handshake to report).
func (d *doctor) httpAnswer(ctx context.Context, p config.ProviderConfig, prefix string, viaProxy bool) []Check {
	u, _ := url.Parse(p.TokenURL)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       d.tlsConfig(u.Hostname()),
		TLSHandshakeTimeout:   d.opts.Timeout,
		ResponseHeaderTimeout: d.opts.Timeout,
		DisableKeepAlives:     true,
		ForceAttemptHTTP2:     true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: d.opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, p.TokenURL, strings.NewReader("grant_type=refresh_token"))
	if err != nil {
		return []Check{{Name: prefix + "http", Status: CheckFail, Detail: fmt.Sprintf("build request: %v", err),
			Fix: fmt.Sprintf("correct providers.%s.token_url", p.Name)}}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := hc.Do(req)
	c := Check{Name: prefix + "http"}
	if err != nil {
		c.Status = CheckFail
		c.Detail = fmt.Sprintf("no HTTP answer from %s: %v", u.Host, httpReason(err))
		c.Fix = fmt.Sprintf("check that %s is reachable from this host (firewall, proxy settings) and that providers.%s.token_url is right", u.Host, p.Name)
		var out []Check
		var cve *tls.CertificateVerificationError
		if viaProxy && errors.As(err, &cve) {
			out = append(out, d.certCheck(prefix+"tls", p.Name, u.Hostname(), tls.ConnectionState{}, cve))
		}
		return append(out, c)
	}
	lat := time.Since(start)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	var out []Check
	if viaProxy && resp.TLS != nil {
		out = append(out, d.certCheck(prefix+"tls", p.Name, u.Hostname(), *resp.TLS, nil))
	}
	answer := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if code := oauthErrorCode(body); code != "" {
		answer += " " + code
	}
	c.Detail = fmt.Sprintf("%s answered %s in %s (no token sent)", u.Host, answer, ms(lat))
	switch s := resp.StatusCode; {
	case s >= 300 && s < 400:
		c.Status = CheckWarn
		c.Detail += fmt.Sprintf("; it redirects to %s, which probes do not follow", redactURL(resp.Header.Get("Location")))
		c.Fix = fmt.Sprintf("set providers.%s.token_url to the URL the endpoint redirects to", p.Name)
	case s == http.StatusNotFound || s == http.StatusMethodNotAllowed:
		c.Status = CheckWarn
		c.Detail += "; this does not look like a token endpoint"
		c.Fix = fmt.Sprintf("check the path of providers.%s.token_url (the provider's documentation names its token endpoint)", p.Name)
	case s == http.StatusTooManyRequests:
		c.Status = CheckWarn
		c.Fix = fmt.Sprintf("the provider rate-limits this host: lower providers.%s.rate or concurrency", p.Name)
	case s >= 500:
		c.Status = CheckWarn
		c.Detail += "; the provider has an outage or a proxy in between fails"
		c.Fix = "nothing to change here if the provider's status page shows an outage; otherwise check the proxy between this host and the provider"
	default:
		c.Status = CheckOK
	}
	return append(out, c)
}

// oauthErrorCode returns the RFC 6749 §5.2 "error" code of a JSON or form
// answer, or "". Only the code is shown: descriptions can be long, and the
// request carried nothing secret for them to echo anyway.
func oauthErrorCode(body []byte) string {
	var v struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil {
		if s, ok := v.Error.(string); ok && validCode(s) {
			return s
		}
		return ""
	}
	if q, err := url.ParseQuery(string(body)); err == nil && validCode(q.Get("error")) {
		return q.Get("error")
	}
	return ""
}

func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// redactURL keeps a redirect target's scheme, host and path; its query could
// carry anything.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return "an unreadable location"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

func httpReason(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return unwrapOp(err)
}

func dnsReason(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return "no such host"
		case de.IsTimeout:
			return "DNS timeout"
		}
		return de.Err
	}
	return err.Error()
}

func first(ss []string, n int) []string {
	if len(ss) > n {
		return append(ss[:n:n], fmt.Sprintf("… (%d more)", len(ss)-n))
	}
	return ss
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}
