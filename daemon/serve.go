package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/peercred"
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

// listenSocket listens on a unix socket with mode 0660, in a directory no
// other user can write (else one could put a socket there that poses as
// the daemon, and the CLI would send it tokens). A socket file left at the
// path is replaced only when nothing answers on it: the database lock says
// nothing about a daemon with another daemon.db on the same socket.
func listenSocket(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if err := peercred.CheckSocketDir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another daemon.socket", path)
		}
		if err := socketInUse(path); err != nil {
			return nil, err
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

// socketInUse connects to the socket file at path. It returns nil when
// nothing listens there (a stale socket, left by a crash), and otherwise an
// error naming the process that holds it.
func socketInUse(path string) error {
	conn, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s exists and cannot be tried (%w): remove it if no grantwatch listens there, or choose another daemon.socket", path, err)
	}
	defer conn.Close()
	who, look := "another process", "ss -xlp shows which"
	if c, err := peercred.Of(conn); err == nil && c.PID != 0 {
		who = fmt.Sprintf("process %d (uid %d)", c.PID, c.UID)
		look = fmt.Sprintf("ps -o user,pid,cmd -p %d shows it", c.PID)
	}
	return fmt.Errorf("%s is in use: %s listens on it, perhaps a grantwatch with another daemon.db (%s); give each daemon its own daemon.socket, or stop that process", path, who, look)
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
	return api.TCPHandler(d, d.log, d.metricsHandler(), tok), nil
}

// Ready reports why the daemon is not ready, or nil: the store is open and
// the scheduler loop showed it is alive (a due scan, or a beat while it waits
// for busy workers) within three minutes. It measures a live loop, not a
// finished round: a first round over a large fleet lasts hours.
func (d *Daemon) Ready() error {
	if _, err := d.db.Counts(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	t := d.lastTick.Load()
	if t == 0 {
		return errors.New("scheduler has not ticked yet")
	}
	if age := d.now().Sub(time.Unix(0, t)); age > 3*time.Minute {
		return fmt.Errorf("the scheduler loop has not run for %s: it is stuck; restart the daemon", age.Round(time.Second))
	}
	return nil
}

// ListenAddr is the TCP listener's address once Run serves ("" before, or
// when daemon.listen is off); with port 0 in the config it tells the port.
func (d *Daemon) ListenAddr() string {
	a, _ := d.listenAddr.Load().(string)
	return a
}
