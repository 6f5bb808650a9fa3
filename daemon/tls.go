package daemon

// HTTPS on daemon.listen (daemon.tls_cert_file, tls_key_file,
// tls_client_ca_file), after Prometheus exporter-toolkit's web config
// (web/tls_config.go): TLS 1.2 or later, the certificate read again when
// it changes, client certificates verified against a CA file. Unlike the
// toolkit, which reads its files on every handshake, the files are read
// again only when one of them changed (size, mtime or inode), so a renewed
// certificate is served from the next connection on without a restart and
// a handshake costs no file read.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// tlsFiles serves the listener's certificate and client CAs from files.
type tlsFiles struct {
	cert, key, clientCA string

	mu      sync.Mutex
	stamp   [3]fileStamp
	current *tls.Config
	err     error
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stampOf(path string) (fileStamp, error) {
	if path == "" {
		return fileStamp{}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// newTLSFiles reads the files once, so that a bad certificate stops the
// daemon at start rather than failing every handshake.
func newTLSFiles(cert, key, clientCA string) (*tlsFiles, error) {
	t := &tlsFiles{cert: cert, key: key, clientCA: clientCA}
	if _, err := t.config(); err != nil {
		return nil, err
	}
	return t, nil
}

// serverConfig is the listener's tls.Config: each handshake gets the
// current files' config.
func (t *tlsFiles) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.config()
		},
	}
}

// config returns the config for the files as they are now, reading them
// again when one changed. A renewal caught half-written (a key that does not
// match the certificate yet) keeps the last good config and is read again
// at the next handshake.
func (t *tlsFiles) config() (*tls.Config, error) {
	var stamp [3]fileStamp
	var err error
	for i, p := range []string{t.cert, t.key, t.clientCA} {
		st, serr := stampOf(p)
		err = errors.Join(err, serr)
		stamp[i] = st
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current != nil && (err != nil || stamp == t.stamp) {
		return t.current, nil
	}
	c, lerr := t.load()
	if lerr != nil {
		t.err = lerr
		if t.current != nil {
			return t.current, nil
		}
		return nil, lerr
	}
	t.current, t.stamp, t.err = c, stamp, nil
	return c, nil
}

func (t *tlsFiles) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.cert, t.key)
	if err != nil {
		return nil, fmt.Errorf("daemon.tls_cert_file, daemon.tls_key_file: %w", err)
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{cert},
	}
	if t.clientCA != "" {
		pem, err := os.ReadFile(t.clientCA)
		if err != nil {
			return nil, fmt.Errorf("daemon.tls_client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("daemon.tls_client_ca_file: %s holds no PEM certificate", t.clientCA)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}
