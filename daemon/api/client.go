package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grantwatch/grantwatch/internal/peercred"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// Client is the CLI's handle on grantwatch: the running daemon's control
// socket, or — when no daemon runs — the same API served in-process on the
// database (daemon.Connect chooses). Either way every command takes the
// same path.
type Client struct {
	hc *http.Client
	// Local reports that no daemon answered and the database was opened
	// directly.
	Local bool
	close func() error
}

// Close releases the client (and the database, when opened locally).
func (c *Client) Close() error {
	if c.close != nil {
		return c.close()
	}
	return nil
}

// SocketClient talks to the daemon on the unix socket at path. A request
// waits at most responseTimeout for its answer's headers (0: no bound).
// Each connection is checked before anything is sent on it (refresh tokens
// are, by import and set-token): the socket's directory must be one no
// other user can write, and the process listening must be root, this user
// or the directory's owner, the daemon's user (peercred, SO_PEERCRED).
func SocketClient(path string, responseTimeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext:           peercred.DialContext(path),
		ResponseHeaderTimeout: responseTimeout,
	}
	return &Client{hc: &http.Client{Transport: tr}, close: func() error { tr.CloseIdleConnections(); return nil }}
}

// DialSocket reaches a running daemon on the socket at path: it connects,
// checks the peer as SocketClient does, and asks for an answer within
// AnswerTimeout. A failed connect is returned as the dialer's error
// (*net.OpError), so that the caller can tell "no daemon" (the socket is
// missing or refuses) from a daemon that accepts but does not answer, and
// from a peer that is not trusted (peercred.ErrUntrustedPeer,
// peercred.ErrUnsafeDir: nothing was sent to it).
func DialSocket(ctx context.Context, path string, responseTimeout time.Duration) (*Client, error) {
	dctx, cancel := context.WithTimeout(ctx, AnswerTimeout)
	conn, err := peercred.Dial(dctx, path)
	cancel()
	if err != nil {
		return nil, err
	}
	// A connection is accepted by the kernel even when the daemon is
	// stopped or wedged: ask it for an answer, in bounded time.
	err = ping(conn)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("daemon.socket %s accepts connections but the daemon does not answer (%v): is it stopped or stuck? check its log and restart it", path, err)
	}
	return SocketClient(path, responseTimeout), nil
}

// AnswerTimeout bounds how long the CLI waits for a running daemon to
// answer on its control socket before it reports the daemon stuck.
var AnswerTimeout = 5 * time.Second

// ping sends one request on conn and waits, at most AnswerTimeout, for
// any HTTP answer.
func ping(conn net.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(AnswerTimeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "GET /v1/ping HTTP/1.1\r\nHost: grantwatch\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fmt.Errorf("no answer within %s", AnswerTimeout)
		}
		return err
	}
	resp.Body.Close()
	return nil
}

// InProcess serves h (the control API on an opened database) to a client
// without a socket. Closing the client calls closeFn, when set; local marks
// the client as not talking to a running daemon.
func InProcess(h http.Handler, local bool, closeFn func() error) *Client {
	ln := newPipeListener()
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.dial(ctx) }}
	return &Client{
		hc:    &http.Client{Transport: tr},
		Local: local,
		close: func() error {
			tr.CloseIdleConnections()
			srv.Close()
			if closeFn != nil {
				return closeFn()
			}
			return nil
		},
	}
}

// pipeListener is an in-memory net.Listener: the in-process API is real
// HTTP, streaming included, without a file on disk.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.ch <- a:
		return b, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "in-process" }

// do sends one request and decodes a JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://grantwatch"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("talk to grantwatch: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e ErrorBody
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		if resp.StatusCode == http.StatusNotFound {
			return nil, remoteError{msg: e.Error, is: store.ErrNotFound}
		}
		return nil, errors.New(e.Error)
	}
	return resp, nil
}

// Status fetches the fleet's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// List streams grants, filtered by state and provider when non-empty.
func (c *Client) List(ctx context.Context, state, provider string, fn func(store.Grant) error) error {
	return c.ListExpiring(ctx, 0, state, provider, fn)
}

// ListExpiring is List of the grants forecast to die within `within` from
// now (all grants when it is 0): soonest first, provider by provider.
func (c *Client) ListExpiring(ctx context.Context, within time.Duration, state, provider string, fn func(store.Grant) error) error {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if provider != "" {
		q.Set("provider", provider)
	}
	if within > 0 {
		q.Set("expiring", within.String())
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/grants?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("read grant list: %w", err)
	}
	for dec.More() {
		var g store.Grant
		if err := dec.Decode(&g); err != nil {
			return fmt.Errorf("read grant list: %w", err)
		}
		if err := fn(g); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("grant list ended early (see the daemon's log): %w", err)
	}
	return nil
}

// Show fetches one grant with its history.
func (c *Client) Show(ctx context.Context, id string) (GrantDetail, error) {
	var g GrantDetail
	err := c.do(ctx, http.MethodGet, "/v1/grants/"+url.PathEscape(id), nil, &g)
	return g, err
}

// Remove deletes a grant.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/grants/"+url.PathEscape(id), nil, nil)
}

// Probe probes a grant now.
func (c *Client) Probe(ctx context.Context, id string) (ProbeReport, error) {
	var r ProbeReport
	err := c.do(ctx, http.MethodPost, "/v1/grants/"+url.PathEscape(id)+"/probe", nil, &r)
	return r, err
}

// SetToken stores a new refresh token for a grant and probes it once.
func (c *Client) SetToken(ctx context.Context, id string, tok secret.Secret) (ProbeReport, error) {
	body, err := json.Marshal(map[string]string{"refresh_token": tok.Reveal()})
	if err != nil {
		return ProbeReport{}, err
	}
	var r ProbeReport
	err = c.do(ctx, http.MethodPut, "/v1/grants/"+url.PathEscape(id)+"/refresh_token", strings.NewReader(string(body)), &r)
	return r, err
}

// Observe reports the outcome of an app's own refresh of a grant in
// observe mode; the answer is the verdict, as a probe's.
func (c *Client) Observe(ctx context.Context, id string, obs Observation) (ProbeReport, error) {
	body, err := json.Marshal(obs)
	if err != nil {
		return ProbeReport{}, err
	}
	var r ProbeReport
	err = c.do(ctx, http.MethodPost, "/v1/grants/"+url.PathEscape(id)+"/observations", strings.NewReader(string(body)), &r)
	return r, err
}

// Import sends JSON Lines of grants; progress is called as the daemon
// reports it. Nothing is imported when any line is invalid.
func (c *Client) Import(ctx context.Context, r io.Reader, opts ImportOptions, progress func(ImportProgress)) (ImportProgress, error) {
	q := url.Values{}
	if opts.Source != "" {
		q.Set("source", opts.Source)
	}
	if opts.Replace {
		q.Set("replace", "true")
	}
	if opts.Force {
		q.Set("force", "true")
	}
	resp, err := c.send(ctx, http.MethodPost, "/v1/grants?"+q.Encode(), r)
	if err != nil {
		return ImportProgress{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var last ImportProgress
	for {
		var p ImportProgress
		if err := dec.Decode(&p); err != nil {
			if last.Job == "" {
				return last, fmt.Errorf("the daemon stopped answering while it read the input (%w): nothing was imported", err)
			}
			return last, fmt.Errorf("the daemon stopped answering while it wrote %s (%w), after %d of %d grants: "+
				"a daemon that crashed finishes the import from its spool when it starts again; grantwatch status says whether it did", last.Job, err, last.Done, last.Total)
		}
		if p.Error != "" {
			return p, errors.New(p.Error)
		}
		if p.Final {
			return p, nil
		}
		last = p
		if progress != nil {
			progress(p)
		}
	}
}

// RemoveIDs removes the grants whose ids r holds, one a line, and returns
// how many it removed and how many ids named no grant.
func (c *Client) RemoveIDs(ctx context.Context, r io.Reader) (RemoveResult, error) {
	var out RemoveResult
	err := c.do(ctx, http.MethodPost, "/v1/grants/remove", r, &out)
	return out, err
}

// RemoveWhere removes every grant in state of provider (either may be "",
// not both).
func (c *Client) RemoveWhere(ctx context.Context, state, provider string) (RemoveResult, error) {
	if state == "" && provider == "" {
		return RemoveResult{}, errors.New("name a state or a provider")
	}
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if provider != "" {
		q.Set("provider", provider)
	}
	var out RemoveResult
	err := c.do(ctx, http.MethodPost, "/v1/grants/remove?"+q.Encode(), nil, &out)
	return out, err
}

// Check runs the database check (store.Check) and returns its outcome: nil,
// or the damage found (an error wrapping store.ErrCorrupt), or why it could
// not run. progress is called about every second while it runs.
func (c *Client) Check(ctx context.Context, progress func(elapsed time.Duration)) error {
	resp, err := c.send(ctx, http.MethodPost, "/v1/db/check", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var p CheckProgress
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("database check answer ended early: %w", err)
		}
		elapsed := time.Duration(p.ElapsedSeconds * float64(time.Second))
		switch {
		case p.Final && p.Damaged:
			return remoteError{msg: p.Error, is: store.ErrCorrupt}
		case p.Final && !p.OK:
			return errors.New(p.Error)
		case p.Final:
			return nil
		}
		if progress != nil {
			progress(elapsed)
		}
	}
}

// Backup copies a consistent snapshot of the database to w and returns its
// size. A copy cut short by the daemon is an error, never a short success.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/db/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	ew := &errWriter{w: w}
	n, err := io.Copy(ew, resp.Body)
	switch {
	case ew.err != nil:
		return n, ew.err
	case err != nil:
		return n, fmt.Errorf("back up the database: the copy was cut short after %d bytes (see the daemon's log): %w", n, err)
	}
	return n, nil
}

// errWriter keeps the error of a write to w, to tell it from one of the
// reader in an io.Copy.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// NotifyTest sends a test notification to one receiver, or all with "".
func (c *Client) NotifyTest(ctx context.Context, receiver string) ([]NotifyTestResult, error) {
	var out []NotifyTestResult
	err := c.do(ctx, http.MethodPost, "/v1/notify/test?receiver="+url.QueryEscape(receiver), nil, &out)
	return out, err
}

// remoteError is an error the daemon reported, with the sentinel it wrapped
// there, so callers can still branch with errors.Is.
type remoteError struct {
	msg string
	is  error
}

func (e remoteError) Error() string { return e.msg }
func (e remoteError) Unwrap() error { return e.is }

// DeadLetters lists the notifications no receiver accepted within max_age.
func (c *Client) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var out []DeadLetter
	err := c.do(ctx, http.MethodGet, "/v1/notify/dead", nil, &out)
	return out, err
}

// Redeliver puts dead letters back in the outbox: receiver's ("" for every
// configured receiver), only seqs if any are given.
func (c *Client) Redeliver(ctx context.Context, receiver string, seqs []uint64) (RedeliverResult, error) {
	q := url.Values{}
	if receiver != "" {
		q.Set("receiver", receiver)
	}
	for _, s := range seqs {
		q.Add("seq", strconv.FormatUint(s, 10))
	}
	var out RedeliverResult
	err := c.do(ctx, http.MethodPost, "/v1/notify/dead/redeliver?"+q.Encode(), nil, &out)
	return out, err
}
