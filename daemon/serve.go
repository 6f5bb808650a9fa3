package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/peercred"
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

// httpTimeouts bound the listeners' connections (net/http's Server
// fields), so that a slow or idle client cannot hold one for long: the
// headers within readHeader, the whole request within read, the answer
// within write, and an idle keep-alive connection is closed after idle.
// Streaming routes (import, list) extend their own deadlines as they go.
type httpTimeouts struct {
	readHeader, read, write, idle time.Duration
}

// serverTimeouts sizes the timeouts to the slowest answer there is:
// set-token waits for a probe of the old token in flight (probe_timeout),
// then for a slot within the provider's limits (probe_timeout), then
// probes (probe_timeout).
func serverTimeouts(cfg *config.Config) httpTimeouts {
	return httpTimeouts{
		readHeader: 10 * time.Second,
		read:       30 * time.Second,
		write:      3*cfg.Daemon.ProbeTimeout + 30*time.Second,
		idle:       60 * time.Second,
	}
}

// newServer is an http.Server for h with the daemon's timeouts.
func (d *Daemon) newServer(h http.Handler) *http.Server {
	t := d.timeouts
	return &http.Server{Handler: h, ReadHeaderTimeout: t.readHeader, ReadTimeout: t.read,
		WriteTimeout: t.write, IdleTimeout: t.idle, MaxHeaderBytes: 64 << 10}
}

// serve starts the control socket and, when configured, the TCP listener.
// Each listener serves at most its own number of connections (the rest
// wait in the kernel's backlog), so a flood of one cannot take the file
// descriptors the other (and the probes, and the exec receivers) need: the
// CLI still gets in on the socket while the TCP listener is saturated.
func (d *Daemon) serve(ctx context.Context) (*servers, error) {
	cfg := d.Config()
	s := &servers{}
	ln, err := listenSocket(cfg.Daemon.Socket)
	if err != nil {
		return nil, fmt.Errorf("daemon.socket: %w", err)
	}
	sock := d.newServer(d.Handler())
	sock.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	s.list = append(s.list, sock)
	go sock.Serve(netutil.LimitListener(ln, cfg.Daemon.SocketMaxConnections))

	if cfg.Daemon.Listen != "" {
		h, err := d.tcpHandler()
		if err != nil {
			s.close()
			return nil, err
		}
		var tf *tlsFiles
		if cfg.Daemon.TLSCertFile != "" {
			if tf, err = newTLSFiles(cfg.Daemon.TLSCertFile, cfg.Daemon.TLSKeyFile, cfg.Daemon.TLSClientCAFile); err != nil {
				s.close()
				return nil, err
			}
		}
		tl, err := net.Listen("tcp", cfg.Daemon.Listen)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("daemon.listen: %w", err)
		}
		srv := d.newServer(h)
		// Failed handshakes (scanners, clients without a certificate) are
		// DEBUG lines of the daemon's log, not lines on stderr.
		srv.ErrorLog = slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)
		s.list = append(s.list, srv)
		d.listenAddr.Store(tl.Addr().String())
		limited := netutil.LimitListener(tl, cfg.Daemon.MaxConnections)
		if tf != nil {
			srv.TLSConfig = tf.serverConfig()
			go srv.ServeTLS(limited, "", "")
		} else {
			if !loopbackListen(cfg.Daemon.Listen) {
				d.log.Warn("daemon.listen is plain HTTP on a network address: the token routes and PUT refresh_token answer 403 there; set daemon.tls_cert_file and daemon.tls_key_file",
					"listen", cfg.Daemon.Listen)
			}
			go srv.Serve(limited)
		}
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

// tcpHandler serves /metrics, /healthz, /readyz and the routes apps reach
// with an app key: the broker, reading a grant, setting its token.
func (d *Daemon) tcpHandler() (http.Handler, error) {
	cfg := d.Config()
	if err := d.readLegacyKey(cfg.Daemon.APITokenFile); err != nil {
		return nil, err
	}
	if err := d.loadKeys(); err != nil {
		return nil, err
	}
	h := d.redirectToLeader(api.TCPHandler(d, d.log, d.metricsHandler(), d))
	if d.opts.TCPHandler != nil {
		h = d.opts.TCPHandler(d, h)
	}
	return h, nil
}

// Ready reports why the daemon is not ready, or nil: the store is open and
// writes, and the scheduler loop showed it is alive (a due scan, or a beat
// while it waits for busy workers) within three minutes. It measures a live
// loop, not a finished round: a first round over a large fleet lasts hours.
func (d *Daemon) Ready() error {
	if why, fix := d.readiness(); why != "" {
		return fmt.Errorf("%s: %s", why, fix)
	}
	return nil
}

// readiness is Ready's reason and its fix, "" when ready (status and
// doctor show them apart).
func (d *Daemon) readiness() (why, fix string) {
	if _, err := d.db.Counts(); err != nil {
		return fmt.Sprintf("store: %v", err), "run grantwatch doctor: its database check names the fix"
	}
	if f := d.fault.Load(); f != nil {
		return fmt.Sprintf("store cannot write since %s (%s): probing is paused, %d rotated refresh token(s) held in memory",
				f.since.Format(time.RFC3339), f.cause, d.unstoredCount()),
			f.fix + "; grantwatch resumes by itself once it can write"
	}
	t := d.lastTick.Load()
	if t == 0 {
		return "scheduler has not ticked yet", "wait for the first tick (daemon.tick), or read the daemon's log"
	}
	if age := d.now().Sub(time.Unix(0, t)); age > 3*time.Minute {
		return fmt.Sprintf("the scheduler loop has not run for %s: it is stuck", age.Round(time.Second)),
			"restart the daemon (systemctl restart grantwatch) and report its log"
	}
	return "", ""
}

// ListenAddr is the TCP listener's address once Run serves ("" before, or
// when daemon.listen is off); with port 0 in the config it tells the port.
func (d *Daemon) ListenAddr() string {
	a, _ := d.listenAddr.Load().(string)
	return a
}

// loopbackListen reports whether a listen address (host:port) accepts
// loopback connections only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return config.IsLoopback(host)
}
