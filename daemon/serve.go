package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/secret"
)

// servers are the daemon's listeners: the control socket and the TCP
// listener for metrics, health and the grant API.
type servers struct {
	list []*http.Server
}

func (s *servers) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.list {
		_ = srv.Shutdown(ctx)
	}
}

// serve starts the control socket and, when configured, the TCP listener.
func (d *Daemon) serve(ctx context.Context) (*servers, error) {
	cfg := d.Config()
	s := &servers{}
	ln, err := listenSocket(cfg.Daemon.Socket)
	if err != nil {
		return nil, fmt.Errorf("daemon.socket: %w", err)
	}
	sock := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	s.list = append(s.list, sock)
	go sock.Serve(ln)

	if cfg.Daemon.Listen != "" {
		h, err := d.tcpHandler()
		if err != nil {
			s.close()
			return nil, err
		}
		tl, err := net.Listen("tcp", cfg.Daemon.Listen)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("daemon.listen: %w", err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		s.list = append(s.list, srv)
		d.listenAddr.Store(tl.Addr().String())
		go srv.Serve(tl)
	}
	return s, nil
}

// listenSocket listens on a unix socket with mode 0660. The daemon holds the
// database lock, so a socket file left at the path is stale and replaced.
func listenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another daemon.socket", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// tcpHandler serves /metrics, /healthz, /readyz and, with a token file, the
// grant API for apps whose users just reconnected.
func (d *Daemon) tcpHandler() (http.Handler, error) {
	cfg := d.Config()
	var tok secret.Secret
	if cfg.Daemon.APITokenFile != "" {
		b, err := os.ReadFile(cfg.Daemon.APITokenFile)
		if err != nil {
			return nil, fmt.Errorf("daemon.api_token_file: %w", err)
		}
		tok = secret.Secret(strings.TrimSpace(string(b)))
		if len(tok.Reveal()) < 16 {
			return nil, fmt.Errorf("daemon.api_token_file: %s holds a token shorter than 16 characters", cfg.Daemon.APITokenFile)
		}
	}
	return d.redirectToLeader(api.TCPHandler(d, d.log, d.metricsHandler(), tok)), nil
}

// Ready reports why the daemon is not ready, or nil: store open and the scheduler
// ticked within three tick periods (at least a minute).
func (d *Daemon) Ready() error {
	if _, err := d.db.Counts(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	t := d.lastTick.Load()
	if t == 0 {
		return errors.New("scheduler has not ticked yet")
	}
	if age := d.now().Sub(time.Unix(0, t)); age > 3*time.Minute {
		return fmt.Errorf("scheduler last ticked %s ago", age.Round(time.Second))
	}
	return nil
}

// ListenAddr is the TCP listener's address once Run serves ("" before, or
// when daemon.listen is off); with port 0 in the config it tells the port.
func (d *Daemon) ListenAddr() string {
	a, _ := d.listenAddr.Load().(string)
	return a
}
