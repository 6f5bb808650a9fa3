// Package doctor diagnoses an installation: the config, the daemon's control
// socket, the database and its key, each provider's token endpoint (without
// spending a grant), the clock, the receivers and systemd. Each check is a
// small function returning Check; Doctor runs them in order.
package doctor

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// Check statuses. A warn never makes Report.OK false; a fail does.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// Check is one finding of Doctor. Name is stable ("config", "database",
// "provider/google/tls", ...) so that scripts can select it; Fix is one
// sentence telling the operator what to do and is set for every warn and
// fail. No field ever holds a token, a client secret or key bytes.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is the outcome of Doctor. Its JSON shape,
// {"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}, is part of
// grantwatch's interface (grantwatch doctor --json).
type Report struct {
	// OK is false when any check failed; warnings leave it true.
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Options tune Doctor. Zero values are the production defaults.
type Options struct {
	// Timeout bounds each network step (DNS, TCP, TLS, HTTP, NTP, the
	// control socket). Default 5s.
	Timeout time.Duration
	// NTPQuery replaces probes.QueryClock (tests).
	NTPQuery func(ctx context.Context, servers []string) probes.ClockReading
	// Now replaces the wall clock: ages, certificate lifetimes and TLS
	// verification use it (tests).
	Now func() time.Time
	// RootCAs verifies token endpoints' certificates; nil uses the system
	// pool, as the probes do (tests inject an httptest CA).
	RootCAs *x509.CertPool
	// Getenv replaces os.Getenv for the systemd check (tests).
	Getenv func(string) string
	// UnitFile is where the systemd unit is looked for. Default
	// /etc/systemd/system/grantwatch.service.
	UnitFile string
}

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = 5 * time.Second

const (
	defaultUnitFile = "/etc/systemd/system/grantwatch.service"
	// certWarnDays is how close to expiry a token endpoint's certificate
	// gets a warning.
	certWarnDays = 14
	// keyCredential is the systemd credential holding the sealing key.
	keyCredential = "grantwatch.key"
)

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.NTPQuery == nil {
		o.NTPQuery = probes.QueryClock
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.UnitFile == "" {
		o.UnitFile = defaultUnitFile
	}
}

// Run diagnoses an installation: the config at configPath, the daemon's
// control socket, the database and its key, each provider's token endpoint
// (DNS, TCP, TLS, an HTTP answer — without presenting any refresh token, so
// no grant is spent), the clock, each receiver's configuration and the
// systemd environment. It sends no notification and writes nothing, except
// that with the daemon stopped it opens the database read/write briefly
// (which takes its lock and may add missing buckets). Checks that depend on
// a failed one are left out rather than failed twice.
func Run(ctx context.Context, configPath string, opts Options) Report {
	opts.defaults()
	dr := &doctor{opts: opts}

	cfg, err := config.Load(configPath)
	if err != nil {
		dr.add(Check{Name: "config", Status: CheckFail, Detail: err.Error(), Fix: configFix(err, configPath)})
		dr.add(dr.systemd(nil))
		return dr.report()
	}
	dr.add(Check{Name: "config", Status: CheckOK, Detail: fmt.Sprintf("%s: %d provider(s), %d receiver(s)",
		cfg.Path(), len(cfg.Providers), len(cfg.Notify))})

	// The network checks take the longest: start them first, concurrently,
	// and collect them in config order.
	provChecks := make([][]Check, len(cfg.Providers))
	var clockCheck Check
	var wg sync.WaitGroup
	for i, p := range cfg.Providers {
		wg.Go(func() { provChecks[i] = dr.provider(ctx, p) })
	}

	sock, st := dr.daemon(ctx, cfg)
	dr.add(sock)
	running := st != nil
	if running {
		dr.add(Check{Name: "database", Status: CheckOK, Detail: fmt.Sprintf("%s is open in the running daemon: %d grant(s), %d notification(s) pending",
			cfg.Daemon.DB, st.Grants, st.Outbox.Pending)})
		dr.add(dr.keyMode(cfg.Secrets.KeyFile, "in use by the running daemon").Check)
	} else if sock.Status != CheckFail {
		dr.add(dr.store(cfg)...)
	}

	wg.Go(func() { clockCheck = dr.clock(ctx, cfg, st) })
	wg.Wait()
	for _, cs := range provChecks {
		dr.add(cs...)
	}
	dr.add(clockCheck)
	for _, n := range cfg.Notify {
		dr.add(receiverCheck(n))
	}
	dr.add(dr.systemd(cfg))
	return dr.report()
}

// doctor collects checks in order.
type doctor struct {
	opts   Options
	checks []Check
}

func (d *doctor) add(cs ...Check) { d.checks = append(d.checks, cs...) }

func (d *doctor) report() Report {
	r := Report{OK: true, Checks: d.checks}
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	for _, c := range r.Checks {
		if c.Status == CheckFail {
			r.OK = false
		}
	}
	return r
}

func configFix(err error, path string) string {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("create %s from config.example.toml, or name the config with --config or $GRANTWATCH_CONFIG", path)
	}
	if errors.Is(err, fs.ErrPermission) {
		return "run doctor as the daemon's user (or with sudo), or make the config readable to this user"
	}
	return "correct the keys named above (config.example.toml shows each key with its default) and run doctor again"
}

// daemon asks the control socket for the status. It returns the status when
// a daemon answered, nil otherwise.
func (d *doctor) daemon(ctx context.Context, cfg *config.Config) (Check, *api.Status) {
	c := Check{Name: "daemon"}
	sock := cfg.Daemon.Socket
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "unix", sock)
	switch {
	case err == nil:
		conn.Close()
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		c.Status, c.Detail = CheckFail, fmt.Sprintf("control socket %s: permission denied", sock)
		c.Fix = "run doctor as the daemon's user, as a member of its group, or with sudo"
		return c, nil
	case errors.Is(err, fs.ErrNotExist):
		c.Status, c.Detail = CheckWarn, fmt.Sprintf("not running (no control socket at %s)", sock)
		c.Fix = "start it (systemctl start grantwatch, or grantwatch run); if it runs, make daemon.socket the same in both configs"
		return c, nil
	default:
		c.Status, c.Detail = CheckWarn, fmt.Sprintf("not running (control socket %s does not answer: %v)", sock, unwrapOp(err))
		c.Fix = "start it (systemctl start grantwatch, or grantwatch run); the socket file is left over from an earlier run"
		return c, nil
	}
	cl := api.SocketClient(sock, 0)
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		c.Status, c.Detail = CheckFail, fmt.Sprintf("control socket %s answers, but status failed: %v", sock, err)
		c.Fix = "read the daemon's log (journalctl -u grantwatch) and restart it if it is wedged"
		return c, nil
	}
	c.Status = CheckOK
	if st.LastTickAt.IsZero() {
		c.Detail = fmt.Sprintf("running on %s, no tick yet", sock)
		return c, &st
	}
	age := d.opts.Now().Sub(st.LastTickAt)
	c.Detail = fmt.Sprintf("running on %s, last tick %s ago", sock, roundAge(age))
	if sched, err := cron.ParseStandard(cfg.Daemon.Tick); err == nil {
		every := sched.Next(st.LastTickAt).Sub(st.LastTickAt)
		if age > 3*every+30*time.Second {
			c.Status = CheckWarn
			c.Detail += fmt.Sprintf(" (daemon.tick is %q: the scheduler is stalled)", cfg.Daemon.Tick)
			c.Fix = "read the daemon's log (journalctl -u grantwatch) and restart it (systemctl restart grantwatch)"
		}
	}
	return c, &st
}

func roundAge(d time.Duration) time.Duration {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second)
}

// unwrapOp strips a net.OpError's "dial unix PATH: " prefix, which the
// detail already says.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// store checks the key file and the database with no daemon running.
// Nothing is created: a missing key or database is reported, not made.
func (d *doctor) store(cfg *config.Config) []Check {
	dbPath, keyPath := cfg.Daemon.DB, cfg.Secrets.KeyFile
	_, dbErr := os.Stat(dbPath)
	dbExists := dbErr == nil

	keyCheck := d.keyMode(keyPath, "")
	var (
		key       []byte
		keyDenied = errors.Is(keyCheck.err, fs.ErrPermission)
	)
	switch {
	case keyCheck.Status == CheckFail, keyDenied:
	case errors.Is(keyCheck.err, fs.ErrNotExist):
		keyCheck.err = nil
		if dbExists {
			keyCheck.Status = CheckFail
			keyCheck.Detail = fmt.Sprintf("key file %s is missing, but the database %s exists: its tokens are sealed with that key", keyPath, dbPath)
			keyCheck.Fix = "restore the key file the database was created with (secrets.key_file) from a backup; a new key cannot open the database"
		} else {
			keyCheck.Status = CheckWarn
			keyCheck.Detail = fmt.Sprintf("key file %s does not exist yet; the first run creates it (mode 0600)", keyPath)
			keyCheck.Fix = "start grantwatch once (or create the key file), and back it up: without it the tokens cannot be read"
		}
	default:
		k, err := store.LoadKey(keyPath, false)
		switch {
		case errors.Is(err, fs.ErrPermission):
			keyDenied = true
			keyCheck.Status = CheckWarn
			keyCheck.Detail = fmt.Sprintf("key file %s: permission denied", keyPath)
			keyCheck.Fix = "run doctor as the daemon's user or with sudo to check the key and the database"
		case err != nil:
			keyCheck.Status, keyCheck.Detail = CheckFail, err.Error()
			keyCheck.Fix = "restore the key file from a backup: it must hold 32 bytes, raw or as base64 or hex text"
		default:
			key = k
			keyCheck.Detail += " (key " + store.KeyFingerprint(k) + ")"
		}
	}

	db := Check{Name: "database"}
	switch {
	case errors.Is(dbErr, fs.ErrNotExist):
		db.Status = CheckWarn
		db.Detail = fmt.Sprintf("%s does not exist yet; the first run creates it", dbPath)
		db.Fix = "start grantwatch (systemctl start grantwatch, or grantwatch run), then import grants with grantwatch grants import"
	case dbErr != nil:
		db.Status, db.Detail, db.Fix = CheckFail, fmt.Sprintf("%s: %v", dbPath, unwrapPath(dbErr)), dbFix(dbErr)
	case keyDenied:
		db.Status = CheckWarn
		db.Detail = fmt.Sprintf("%s not opened: this user cannot read its key file %s", dbPath, keyPath)
		db.Fix = "run doctor as the daemon's user or with sudo"
	case key == nil:
		db.Status = CheckFail
		db.Detail = fmt.Sprintf("%s not opened: its key file %s is not usable (see the key check)", dbPath, keyPath)
		db.Fix = "fix the key file first"
	default:
		s, err := store.OpenWithKeyFile(cfg.Daemon.DB, cfg.Secrets.KeyFile, store.Options{})
		if err != nil {
			db.Status, db.Detail, db.Fix = CheckFail, err.Error(), dbFix(err)
			break
		}
		defer s.Close()
		counts, err := s.Counts()
		if err != nil {
			db.Status, db.Detail, db.Fix = CheckFail, fmt.Sprintf("%s: read grant counts: %v", dbPath, err), dbFix(store.ErrCorrupt)
			break
		}
		n := 0
		for _, m := range counts {
			for _, v := range m {
				n += v
			}
		}
		pending, _, err := s.OutboxStats()
		if err != nil {
			db.Status, db.Detail, db.Fix = CheckFail, fmt.Sprintf("%s: read outbox: %v", dbPath, err), dbFix(store.ErrCorrupt)
			break
		}
		db.Status = CheckOK
		db.Detail = fmt.Sprintf("%s: schema %d, key matches, %d grant(s), %d notification(s) pending (daemon not running)",
			dbPath, store.SchemaVersion, n, pending)
	}
	keyCheck.err = nil
	return []Check{db, keyCheck.Check}
}

// keyResult is a key check with the error that decided it.
type keyResult struct {
	Check
	err error
}

// keyMode checks the key file's permission bits. note, when set, is added to
// an ok detail.
func (d *doctor) keyMode(path, note string) keyResult {
	c := keyResult{Check: Check{Name: "key"}}
	mode, err := store.KeyFileMode(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.err = err
		c.Status = CheckWarn
		c.Detail = fmt.Sprintf("key file %s does not exist", path)
		c.Fix = "point secrets.key_file at the key the daemon uses"
		if note != "" {
			// The daemon runs with a key: under systemd it is its credential.
			c.Detail += " here (the daemon may read it from its systemd credential)"
		}
		return c
	case errors.Is(err, fs.ErrPermission):
		c.err = err
		c.Status = CheckWarn
		c.Detail = fmt.Sprintf("key file %s: permission denied", path)
		c.Fix = "run doctor as the daemon's user or with sudo to check the key"
		return c
	case err != nil:
		c.err = err
		c.Status, c.Detail, c.Fix = CheckFail, err.Error(), "make the key file readable by the daemon's user"
		return c
	}
	if mode&0o077 != 0 {
		c.Status = CheckWarn
		c.Detail = fmt.Sprintf("key file %s has mode %04o: group or others can read the key that seals every token", path, mode)
		c.Fix = fmt.Sprintf("chmod 600 %s (owned by the daemon's user)", path)
		return c
	}
	c.Status = CheckOK
	c.Detail = fmt.Sprintf("%s, mode %04o", path, mode)
	if note != "" {
		c.Detail += ", " + note
	}
	return c
}

func dbFix(err error) string {
	switch {
	case errors.Is(err, store.ErrInUse):
		return "another process holds the database but no daemon answers on daemon.socket: make daemon.socket the same in both configs, or stop the other grantwatch"
	case errors.Is(err, store.ErrWrongKey):
		return "set secrets.key_file to the key file the database was created with (restore it from a backup)"
	case errors.Is(err, store.ErrNewerSchema):
		return "run the newer grantwatch that wrote the database (the file was not modified)"
	case errors.Is(err, store.ErrCorrupt):
		return "restore the database from a backup, or move it aside and re-import the grants"
	case errors.Is(err, fs.ErrPermission):
		return "run doctor as the daemon's user or with sudo"
	}
	return "check daemon.db and the permissions of its directory"
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// provider checks p's token endpoint step by step: DNS, TCP, TLS (https
// only) and an HTTP answer. A step that fails ends the chain; later steps
// are left out. No refresh token and no client credentials are sent.
func (d *doctor) provider(ctx context.Context, p config.ProviderConfig) []Check {
	prefix := "provider/" + p.Name + "/"
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
			c.Fix = "create the file, or under systemd hand it in with LoadCredential= (the daemon reads it at start and on reload)"
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

// clock checks this host's clock: one NTP query when servers are configured,
// else the running daemon's estimate from providers' Date headers.
func (d *doctor) clock(ctx context.Context, cfg *config.Config, st *api.Status) Check {
	c := Check{Name: "clock"}
	cc := cfg.Clock
	judge := func(off time.Duration, how string) {
		dir := "ahead"
		if off < 0 {
			dir = "behind"
		}
		abs := absDuration(off)
		c.Detail = fmt.Sprintf("this host's clock is %s %s (%s)", abs.Round(time.Millisecond), dir, how)
		if abs < time.Millisecond {
			c.Detail = fmt.Sprintf("this host's clock is within 1ms (%s)", how)
		}
		switch {
		case abs > cc.MaxOffset:
			c.Status = CheckFail
			c.Detail += fmt.Sprintf(": skewed, beyond clock.max_offset %s; providers refuse refreshes and invalid_grant answers are held", cc.MaxOffset)
			c.Fix = "sync this host's clock (timedatectl status; chronyc tracking or systemctl restart systemd-timesyncd) and check that its NTP service runs"
		case abs > cc.WarnOffset:
			c.Status = CheckWarn
			c.Detail += fmt.Sprintf(", beyond clock.warn_offset %s", cc.WarnOffset)
			c.Fix = "check this host's NTP service (timedatectl status, chronyc tracking) before the offset grows past clock.max_offset"
		default:
			c.Status = CheckOK
		}
	}
	if len(cc.Servers) > 0 {
		qctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		r := d.opts.NTPQuery(qctx, cc.Servers)
		cancel()
		if !r.OK {
			c.Status = CheckWarn
			c.Detail = fmt.Sprintf("no NTP server answered (%s)", strings.Join(cc.Servers, ", "))
			for _, s := range r.Samples {
				if s.Err != nil {
					c.Detail += fmt.Sprintf(": %v", s.Err)
					break
				}
			}
			c.Fix = "UDP port 123 to these servers may be blocked: allow it, list an internal NTP server in clock.servers, or set clock.servers = [] to rely on providers' Date headers"
			return c
		}
		judge(r.Offset, fmt.Sprintf("NTP, %d of %d server(s) answered", r.Servers, len(cc.Servers)))
		return c
	}
	if st != nil && st.Clock.Source != "" {
		judge(time.Duration(st.Clock.OffsetSeconds*float64(time.Second)),
			fmt.Sprintf("the daemon's estimate from %s, %d sample(s)", st.Clock.Source, st.Clock.DateSamples))
		return c
	}
	c.Status = CheckWarn
	c.Detail = "not checked: clock.servers is empty"
	if st != nil {
		c.Detail += " and the daemon has no Date-header estimate yet"
	} else {
		c.Detail += " and no daemon runs to estimate it from providers' Date headers"
	}
	c.Fix = "list reachable NTP servers in clock.servers (an internal one if UDP 123 is blocked), or run doctor again while the daemon runs"
	return c
}

// receiverCheck checks one [[notify]] entry without sending anything: its
// *_file files are readable and non-empty, its URL parses, its command
// exists. Only the URL's scheme and host are shown: the rest may be a
// secret (Slack webhook URLs are).
func receiverCheck(n notify.Config) Check {
	c := Check{Name: "notify/" + n.Name, Status: CheckOK}
	var parts []string
	var warns, fails, fixes []string
	readFile := func(key, path string) (string, bool) {
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			fails = append(fails, fmt.Sprintf("%s %s: %v", key, path, unwrapPath(err)))
			fixes = append(fixes, fmt.Sprintf("make %s readable by the daemon's user (run doctor as that user)", path))
			return "", false
		case strings.TrimSpace(string(b)) == "":
			fails = append(fails, fmt.Sprintf("%s %s is empty", key, path))
			fixes = append(fixes, fmt.Sprintf("write the value into %s", path))
			return "", false
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			warns = append(warns, fmt.Sprintf("%s %s is world-readable (mode %04o)", key, path, fi.Mode().Perm()))
			fixes = append(fixes, fmt.Sprintf("chmod o-r %s", path))
		}
		return strings.TrimSpace(string(b)), true
	}
	rawURL, from := n.URL.Reveal(), ""
	if n.URLFile != "" {
		if s, ok := readFile("url_file", n.URLFile); ok {
			rawURL, from = s, " (from "+n.URLFile+")"
		}
	}
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fails = append(fails, "url is not an http(s) URL"+from)
			fixes = append(fixes, fmt.Sprintf("correct notify.%s.url", n.Name))
		} else {
			parts = append(parts, fmt.Sprintf("sends to %s://%s%s", u.Scheme, u.Host, from))
			if u.Scheme == "http" && !config.IsLoopback(u.Hostname()) {
				warns = append(warns, "url is plain http to a remote host: notifications travel unencrypted")
				fixes = append(fixes, fmt.Sprintf("use an https URL for notify.%s", n.Name))
			}
		}
	}
	if n.SecretFile != "" {
		if _, ok := readFile("secret_file", n.SecretFile); ok {
			parts = append(parts, "signed (secret_file readable)")
		}
	}
	if n.RoutingKeyFile != "" {
		if _, ok := readFile("routing_key_file", n.RoutingKeyFile); ok {
			parts = append(parts, "routing key file readable")
		}
	}
	if n.Type == notify.KindExec && len(n.Command) > 0 {
		if p, err := exec.LookPath(n.Command[0]); err != nil {
			fails = append(fails, fmt.Sprintf("command %s: %v", n.Command[0], unwrapExec(err)))
			fixes = append(fixes, fmt.Sprintf("install %s or correct notify.%s.command", n.Command[0], n.Name))
		} else {
			parts = append(parts, "runs "+p)
		}
	}
	detail := n.Type
	if len(parts) > 0 {
		detail += ": " + strings.Join(parts, ", ")
	}
	switch {
	case len(fails) > 0:
		c.Status = CheckFail
		detail += "; " + strings.Join(append(fails, warns...), "; ")
	case len(warns) > 0:
		c.Status = CheckWarn
		detail += "; " + strings.Join(warns, "; ")
	}
	c.Detail = detail + " (nothing sent: grantwatch notify test sends a test notification)"
	if len(fixes) > 0 {
		c.Fix = strings.Join(fixes, "; ")
	}
	return c
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

// systemd reports the systemd environment: the variables the unit sets and
// whether the key credential is there. cfg may be nil (invalid config).
func (d *doctor) systemd(cfg *config.Config) Check {
	c := Check{Name: "systemd", Status: CheckOK}
	env := d.opts.Getenv
	under := env("INVOCATION_ID") != "" || env("NOTIFY_SOCKET") != ""
	_, unitErr := os.Stat(d.opts.UnitFile)
	hasUnit := unitErr == nil
	if !under && !hasUnit {
		c.Detail = "not under systemd, and no unit at " + d.opts.UnitFile
		return c
	}
	var parts []string
	if under {
		parts = append(parts, "running under systemd")
		for _, k := range []string{"STATE_DIRECTORY", "RUNTIME_DIRECTORY", "CREDENTIALS_DIRECTORY"} {
			v := env(k)
			if v == "" {
				v = "(unset)"
			}
			parts = append(parts, k+"="+v)
		}
		if dir := env("CREDENTIALS_DIRECTORY"); dir != "" {
			cred := filepath.Join(dir, keyCredential)
			if _, err := os.Stat(cred); err == nil {
				parts = append(parts, "credential "+keyCredential+" present")
			} else {
				c.Status = CheckWarn
				parts = append(parts, "credential "+keyCredential+" missing")
				c.Fix = "add LoadCredential=" + keyCredential + ":/etc/grantwatch/grantwatch.key to the unit (systemd/grantwatch.service), or set secrets.key_file"
			}
		} else if cfg != nil && cfg.Secrets.KeyFile != "" {
			parts = append(parts, "key from secrets.key_file "+cfg.Secrets.KeyFile)
		}
	} else {
		parts = append(parts, "not under systemd here; unit "+d.opts.UnitFile)
		parts = append(parts, unitSettings(d.opts.UnitFile)...)
	}
	c.Detail = strings.Join(parts, ", ")
	return c
}

// unitSettings lists the unit's directory and credential settings.
func unitSettings(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{fmt.Sprintf("unreadable: %v", unwrapPath(err))}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Type", "StateDirectory", "RuntimeDirectory":
			out = append(out, strings.TrimSpace(k)+"="+strings.TrimSpace(v))
		case "LoadCredential", "LoadCredentialEncrypted", "SetCredential":
			// Only the credential's name: SetCredential= carries the value.
			name, _, _ := strings.Cut(strings.TrimSpace(v), ":")
			out = append(out, strings.TrimSpace(k)+"="+name)
		}
	}
	return out
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
