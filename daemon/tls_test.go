package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// testCA signs certificates for the tests' loopback listeners and clients.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "grantwatch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for 127.0.0.1 (server) or a
// client, with the given serial.
func (ca *testCA) issue(t *testing.T, serial int64, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "grantwatch test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLSListener: with tls_cert_file and tls_key_file the listener is
// HTTPS (the broker answers there, plain HTTP does not), and a renewed
// certificate written over the files is served from the next connection on,
// without a reload or a restart.
func TestTLSListener(t *testing.T) {
	sb := testutil.Sandbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{`{"id":"g1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `"}`})
	ca := newCA(t)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, k1 := ca.issue(t, 100, false)
	writeFile(t, certFile, c1)
	writeFile(t, keyFile, k1)
	b := startBroker(t, cfg, func(c *config.Config) { c.Daemon.TLSCertFile, c.Daemon.TLSKeyFile = certFile, keyFile })
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	b.url = "https://" + b.d.ListenAddr()

	// fetch asks for a token on a new connection and reports the serial of
	// the certificate the listener showed.
	fetch := func() (int, int64) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		b.hc = &http.Client{Transport: tr}
		req, _ := http.NewRequest("GET", b.url+"/v1/grants/g1/token", nil)
		req.Header.Set("Authorization", "Bearer "+b.key)
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if code, serial := fetch(); code != 200 || serial != 100 {
		t.Fatalf("over HTTPS: %d, serial %d", code, serial)
	}
	resp, err := http.Get("http://" + b.d.ListenAddr() + "/v1/grants/g1/token")
	if err == nil {
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS listener: %d", resp.StatusCode)
		}
		resp.Body.Close()
	}

	// certbot renews: new files in place (a key first, then the
	// certificate; a handshake in between keeps the old pair).
	c2, k2 := ca.issue(t, 200, false)
	writeFile(t, keyFile, k2)
	if code, serial := fetch(); code != 200 || serial != 100 {
		t.Errorf("mid-renewal: %d, serial %d, want the old certificate", code, serial)
	}
	writeFile(t, certFile, c2)
	if code, serial := fetch(); code != 200 || serial != 200 {
		t.Errorf("after renewal: %d, serial %d, want the renewed certificate", code, serial)
	}
}

// TestTLSClientCA: with tls_client_ca_file a client must present a
// certificate that CA signed; one without is refused in the handshake.
func TestTLSClientCA(t *testing.T) {
	sb := testutil.Sandbox(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb))
	importLines(t, cfg, []string{`{"id":"g1","provider":"acme","refresh_token":"` + sb.Issue(sandbox.Healthy) + `"}`})
	ca, clientCA, otherCA := newCA(t), newCA(t), newCA(t)
	sc, sk := ca.issue(t, 1, false)
	files := map[string][]byte{"tls.crt": sc, "tls.key": sk, "clients.pem": clientCA.pem}
	for name, b := range files {
		writeFile(t, filepath.Join(dir, name), b)
	}
	b := startBroker(t, cfg, func(c *config.Config) {
		c.Daemon.TLSCertFile, c.Daemon.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		c.Daemon.TLSClientCAFile = filepath.Join(dir, "clients.pem")
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	get := func(signer *testCA) (int, error) {
		conf := &tls.Config{RootCAs: pool}
		if signer != nil {
			cc, ck := signer.issue(t, 7, true)
			pair, err := tls.X509KeyPair(cc, ck)
			if err != nil {
				t.Fatal(err)
			}
			conf.Certificates = []tls.Certificate{pair}
		}
		tr := &http.Transport{TLSClientConfig: conf}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+b.d.ListenAddr()+"/v1/grants/g1/token", nil)
		req.Header.Set("Authorization", "Bearer "+b.key)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(clientCA); err != nil || code != 200 {
		t.Errorf("client certificate of the CA: %d %v", code, err)
	}
	for name, signer := range map[string]*testCA{"no certificate": nil, "another CA": otherCA} {
		if code, err := get(signer); err == nil {
			t.Errorf("%s: answered %d, want the handshake refused", name, code)
		}
	}
}

// TestTLSBadFilesStopTheStart: a certificate that does not load stops the
// daemon at start, naming the keys.
func TestTLSBadFilesStopTheStart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	cfg.Daemon.Listen = "127.0.0.1:0"
	cfg.Daemon.TLSCertFile, cfg.Daemon.TLSKeyFile = filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key")
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(t.Context(), nil)
	if err == nil || !strings.Contains(err.Error(), "daemon.tls_cert_file") {
		t.Errorf("Run: %v, want an error naming daemon.tls_cert_file", err)
	}
}

func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9464": true, "[::1]:9464": true, "localhost:9464": true,
		"0.0.0.0:9464": false, ":9464": false, "10.0.0.5:9464": false, "[::]:9464": false, "grantwatch.internal:9464": false,
	} {
		if got := loopbackListen(addr); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}
