// Package api is grantwatch's control API: its routes, its request and
// answer types, and the Client the CLI uses. It is served on the control
// socket by a running daemon, or in-process on an opened database when none
// runs, so every command has one implementation. The handlers call only the
// Service interface declared here; they never reach into the runtime.
package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// Service is what the control API calls; *daemon.Daemon implements it.
// Errors wrapping store.ErrNotFound answer 404, those made with Invalid 400,
// those made with Unavailable 503, the rest 500.
type Service interface {
	// Status gathers the fleet's status.
	Status() (Status, error)
	// Grants calls fn for every grant, or those in state and of provider
	// when non-empty, in storage order.
	Grants(state store.State, provider string, fn func(store.Grant) error) error
	// ExpiringGrants calls fn for every grant forecast to die within
	// `within` from now, of provider when non-empty, soonest first per
	// provider.
	ExpiringGrants(within time.Duration, provider string, fn func(store.Grant) error) error
	// Grant returns one grant with its history.
	Grant(id string) (GrantDetail, error)
	// Remove deletes a grant.
	Remove(id string) error
	// RemoveIDs deletes the grants named and returns how many there were.
	RemoveIDs(ids []string) (int, error)
	// RemoveWhere deletes every grant in state of provider (either may be
	// "", not both) and returns how many there were.
	RemoveWhere(state store.State, provider string) (int, error)
	// ProbeNow probes a grant at once and applies the result.
	ProbeNow(ctx context.Context, id string) (ProbeReport, error)
	// SetToken stores a new refresh token and probes it once.
	SetToken(ctx context.Context, id string, tok secret.Secret) (ProbeReport, error)
	// Observe judges and stores an app's report of its own refresh of a
	// grant of a provider in observe mode, as a probe's result.
	Observe(ctx context.Context, id string, obs Observation) (ProbeReport, error)
	// Import reads JSON Lines of grants and stores them, calling progress
	// (never concurrently) as it goes; nothing is written unless every line
	// is valid and opts allow every token it would replace.
	Import(ctx context.Context, r io.Reader, opts ImportOptions, progress func(ImportProgress)) (ImportProgress, error)
	// Check verifies the whole database (store.Check): nil, or an error
	// wrapping store.ErrCorrupt that lists the damage.
	Check(ctx context.Context) error
	// Backup writes a consistent copy of the database to w (store.Backup)
	// and returns its size.
	Backup(w io.Writer) (int64, error)
	// NotifyTest sends a test notification to receiver, or to all with "".
	NotifyTest(ctx context.Context, receiver string) ([]NotifyTestResult, error)
	// DeadLetters lists the notifications no receiver accepted.
	DeadLetters() ([]DeadLetter, error)
	// Redeliver puts dead letters back in the outbox.
	Redeliver(receiver string, seqs []uint64) (RedeliverResult, error)
	// Ready reports why the daemon is not ready, or nil.
	Ready() error
	// ReconnectLink makes a hosted reconnect link for a grant, working
	// for ttl (0: reconnect.link_ttl); by says who asked.
	ReconnectLink(ctx context.Context, id string, ttl time.Duration, by string) (ReconnectLink, error)
}

// Invalid marks err as the request's own fault: it answers 400.
func Invalid(err error) error { return clientError{err} }

// clientError marks a request's own fault (400).
type clientError struct{ error }

func (e clientError) Unwrap() error { return e.error }

// Unavailable marks err as a refusal for now (the provider's limits, a
// store that cannot write): it answers 503 with Retry-After, retryAfter
// rounded up to whole seconds.
func Unavailable(err error, retryAfter time.Duration) error {
	return unavailableError{err, retryAfter}
}

// IsUnavailable reports whether err was made with Unavailable.
func IsUnavailable(err error) bool {
	var ue unavailableError
	return errors.As(err, &ue)
}

type unavailableError struct {
	error
	retryAfter time.Duration
}

func (e unavailableError) Unwrap() error { return e.error }

// server serves the control API on a Service.
type server struct {
	svc Service
	log *slog.Logger
}

// Handler is the control API on svc. log receives the errors that cannot
// reach the client (a list cut off mid-stream); nil discards them.
func Handler(svc Service, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{svc: svc, log: log}
	mux := http.NewServeMux()
	handle := func(pattern string, limit int64, h http.HandlerFunc) {
		mux.Handle(pattern, limitBody(limit, h))
	}
	handle("GET /v1/ping", maxBody, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	handle("GET /v1/status", maxBody, s.handleStatus)
	handle("GET /v1/grants", maxBody, s.handleList)
	// The service bounds an import's body itself (daemon.import_max_bytes,
	// with an error that names the key), as it spools it.
	mux.HandleFunc("POST /v1/grants", s.handleImport)
	handle("POST /v1/grants/remove", maxRemoveBody, s.handleRemoveMany)
	handle("GET /v1/grants/{id}", maxBody, s.handleShow)
	handle("DELETE /v1/grants/{id}", maxBody, s.handleRemove)
	handle("POST /v1/grants/{id}/probe", maxBody, s.handleProbe)
	handle("PUT /v1/grants/{id}/refresh_token", maxBody, s.handleSetToken)
	handle("POST /v1/grants/{id}/observations", maxBody, s.handleObserve)
	handle("POST /v1/grants/{id}/reconnect_link", maxBody, s.linkHandler(func(*http.Request) string { return "cli" }))
	handle("POST /v1/notify/test", maxBody, s.handleNotifyTest)
	handle("GET /v1/notify/dead", maxBody, s.handleDead)
	handle("POST /v1/notify/dead/redeliver", maxBody, s.handleRedeliver)
	handle("POST /v1/db/check", maxBody, s.handleCheck)
	handle("GET /v1/db/backup", maxBody, s.handleBackup)
	if b, ok := svc.(Broker); ok {
		brokerRoutes(mux, b, nil)
	}
	if ka, ok := svc.(KeyAdmin); ok {
		keyRoutes(mux, ka)
	}
	return mux
}

// Request bodies are bounded: a set-token body is a token, an observation
// a token endpoint's error answer, a bulk remove's ids (one a line, 10⁶ of
// them in ~30 MB), the other routes read none; an import is bounded by the
// service.
const (
	maxBody       = 64 << 10
	maxRemoveBody = 64 << 20
)

// limitBody bounds r's body to n bytes (http.MaxBytesReader: a longer one
// fails to read, and the connection is closed after the answer).
func limitBody(n int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, n)
		h.ServeHTTP(w, r)
	})
}

// streamIdle is how long a streaming answer (import, list) waits for the
// client to send or take more before the connection is cut: those routes
// run past the server's read and write timeouts, which bound one request.
const streamIdle = time.Minute

// extendDeadlines gives a streaming route another streamIdle to read and
// write. A connection without deadlines (in-process) ignores it.
func extendDeadlines(rc *http.ResponseController, read bool) {
	at := time.Now().Add(streamIdle)
	_ = rc.SetWriteDeadline(at)
	if read {
		_ = rc.SetReadDeadline(at)
	}
}

// idleBody is an import's body: each read extends the deadlines, so an
// import may take as long as its input does, but not stall.
type idleBody struct {
	r  io.Reader
	rc *http.ResponseController
}

func (b *idleBody) Read(p []byte) (int, error) {
	extendDeadlines(b.rc, true)
	return b.r.Read(p)
}

// TCPHandler serves daemon.listen: /metrics, /healthz and /readyz, open to
// all, and the routes apps reach with an app key (keys; nil serves none):
//
//	GET  /v1/grants/{id}/token          scope token (when svc is a Broker)
//	POST /v1/grants/{id}/token/refresh  scope token
//	GET  /v1/grants/{id}                scope read
//	PUT  /v1/grants/{id}/refresh_token  scope set-token
//	POST /v1/grants/{id}/observations   scope observe (observe mode)
//
// A key reaches only the grants its labels select; any other answers 404,
// as a grant that does not exist. The token and set-token routes are
// refused over plain HTTP on a network address (RequireSecure). The
// control socket's other routes are never served here.
func TCPHandler(svc Service, log *slog.Logger, metrics http.Handler, keys Keys) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", metrics)
	if keys == nil {
		return limitBody(maxBody, mux)
	}
	s := &server{svc: svc, log: log}
	mux.Handle("GET /v1/grants/{id}", s.guard(ScopeRead, false, s.handleShow))
	mux.Handle("PUT /v1/grants/{id}/refresh_token", s.guard(ScopeSetToken, true, s.handleSetToken))
	// An observation carries no token (a success is sent without its
	// body): like read, it may cross plain HTTP.
	mux.Handle("POST /v1/grants/{id}/observations", s.guard(ScopeObserve, false, s.handleObserve))
	mux.Handle("POST /v1/grants/{id}/reconnect_link", s.guard(ScopeLink, true, s.linkHandler(func(r *http.Request) string {
		k, _ := Authorize(r, ScopeLink) // guard let it through: the key is there
		return "app:" + k.Name
	})))
	if b, ok := svc.(Broker); ok {
		brokerRoutes(mux, b, tcpAuthorize)
	}
	return withAuth(keys, log, limitBody(maxBody, mux))
}

// guard lets a request through to next only with an app key that has scope
// and reaches the grant; with secure, only over TLS or loopback. A refusal
// is one WARN line (Authorize, DenyGrant).
func (s *server) guard(scope Scope, secure bool, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		if secure {
			err = RequireSecure(r)
		}
		var k Key
		if err == nil {
			k, err = Authorize(r, scope)
		}
		if d, ok := asDenied(err); ok {
			writeDenied(w, d)
			return
		}
		if id := r.PathValue("id"); len(k.Labels) > 0 {
			g, err := s.svc.Grant(id)
			if err != nil {
				writeErr(w, err)
				return
			}
			if !k.Reaches(g.Labels) {
				DenyGrant(r, k, id)
				writeErr(w, fmt.Errorf("grant %q: %w", id, store.ErrNotFound))
				return
			}
		}
		next(w, r)
	})
}

// writeDenied answers a refused request. A 401 is sent without reading the
// request's body (net/http would otherwise read up to 256 KiB of it, at the
// client's pace, before sending the answer), and closes the connection.
func writeDenied(w http.ResponseWriter, d *DeniedError) {
	if d.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="grantwatch"`)
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, d.Status, ErrorBody{Error: d.Reason})
	if d.Status == http.StatusUnauthorized {
		cutBody(w)
	}
}

// cutBody stops reading the request once the answer is out: the server's
// read of what is left fails at once.
func cutBody(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	_ = rc.SetReadDeadline(time.Now())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var ce clientError
	var ue unavailableError
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.As(err, &ce):
		code = http.StatusBadRequest
	case errors.As(err, &ue):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, ue.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, code, ErrorBody{Error: err.Error()})
}

// answer writes v, or the error.
func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.svc.Status()
	answer(w, st, err)
}

func (s *server) handleList(w http.ResponseWriter, r *http.Request) {
	state := store.State(r.URL.Query().Get("state"))
	prov := r.URL.Query().Get("provider")
	if state != "" && !state.Valid() {
		writeErr(w, Invalid(fmt.Errorf("unknown state %q (states: %s)", state, stateList())))
		return
	}
	grants := s.svc.Grants
	if v := r.URL.Query().Get("expiring"); v != "" {
		// Grants forecast to die within the span, through the expiry
		// index; a state filters them.
		within, err := ParseWithin(v)
		if err != nil {
			writeErr(w, Invalid(fmt.Errorf("expiring: %w", err)))
			return
		}
		grants = func(state store.State, prov string, fn func(store.Grant) error) error {
			return s.svc.ExpiringGrants(within, prov, func(g store.Grant) error {
				if state != "" && g.State != state {
					return nil
				}
				return fn(g)
			})
		}
	}
	// Stream the array: a fleet of a million grants is never held in memory,
	// and a reader that takes its time (grants list | less) is cut only
	// when it takes nothing for streamIdle.
	w.Header().Set("Content-Type", "application/json")
	rc := http.NewResponseController(w)
	bw := bufio.NewWriter(w)
	written, _ := bw.WriteString("[") // what went into bw, sent or not
	first := true
	n := 0
	err := grants(state, prov, func(g store.Grant) error {
		if n++; n%1000 == 1 {
			extendDeadlines(rc, false)
		}
		if !first {
			bw.WriteString(",")
			written++
		}
		first = false
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		bw.WriteString("\n")
		n, err := bw.Write(b)
		written += 1 + n
		return err
	})
	if err != nil && bw.Buffered() == written {
		// Nothing was sent yet (a damaged database fails on its first
		// page): the client gets the error itself.
		writeErr(w, err)
		return
	}
	if err != nil {
		// The status line is sent; an unterminated array tells the client.
		s.log.Error("list grants", "err", err)
		bw.Flush()
		return
	}
	bw.WriteString("\n]\n")
	bw.Flush()
}

func stateList() string {
	var s []string
	for _, st := range store.States() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

func (s *server) handleShow(w http.ResponseWriter, r *http.Request) {
	g, err := s.svc.Grant(r.PathValue("id"))
	answer(w, g, err)
}

func (s *server) handleRemove(w http.ResponseWriter, r *http.Request) {
	err := s.svc.Remove(r.PathValue("id"))
	answer(w, map[string]string{"removed": r.PathValue("id")}, err)
}

func (s *server) handleProbe(w http.ResponseWriter, r *http.Request) {
	rep, err := s.svc.ProbeNow(r.Context(), r.PathValue("id"))
	answer(w, rep, err)
}

// setTokenRequest is the body of PUT /v1/grants/{id}/refresh_token.
type setTokenRequest struct {
	RefreshToken secretField `json:"refresh_token"`
}

// secretField reads a secret from JSON without ever writing it back.
type secretField struct{ secret.Secret }

func (s *secretField) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New("refresh_token must be a string")
	}
	s.Secret = secret.Secret(strings.TrimSpace(v))
	return nil
}

func (s *server) handleSetToken(w http.ResponseWriter, r *http.Request) {
	var req setTokenRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, ErrorBody{Error: fmt.Sprintf("request body larger than %d KiB: send {\"refresh_token\": \"...\"} only", maxBody>>10)})
			return
		}
		writeErr(w, Invalid(fmt.Errorf("read request: %w", err)))
		return
	}
	if req.RefreshToken.IsZero() {
		writeErr(w, Invalid(errors.New("refresh_token is empty")))
		return
	}
	rep, err := s.svc.SetToken(r.Context(), r.PathValue("id"), req.RefreshToken.Secret)
	answer(w, rep, err)
}

func (s *server) handleObserve(w http.ResponseWriter, r *http.Request) {
	var obs Observation
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&obs); err != nil {
		writeErr(w, Invalid(fmt.Errorf(`read observation: want {"status": N, "body": "…", "headers": {"Date": "…"}}: %w`, err)))
		return
	}
	rep, err := s.svc.Observe(r.Context(), r.PathValue("id"), obs)
	answer(w, rep, err)
}

// importOptions reads the import route's query: replace=true lets it
// replace existing grants' tokens, force=true (with replace) tokens that
// rotated since they were imported.
func importOptions(q url.Values) (ImportOptions, error) {
	opts := ImportOptions{Source: q.Get("source")}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"replace", &opts.Replace}, {"force", &opts.Force}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return opts, fmt.Errorf("%s=%q: want true or false", f.name, v)
		}
		*f.dst = b
	}
	if opts.Force && !opts.Replace {
		return opts, errors.New("force=true replaces rotated tokens only together with replace=true")
	}
	return opts, nil
}

func (s *server) handleImport(w http.ResponseWriter, r *http.Request) {
	opts, err := importOptions(r.URL.Query())
	if err != nil {
		writeErr(w, Invalid(err))
		return
	}
	// The answer is a stream of progress lines from the start: reading and
	// validating a million lines takes seconds too. A validation error is
	// the last line (nothing was imported).
	// HTTP/1 servers stop reading a request once the answer is flushed
	// unless asked for full duplex: without it the rest of the input
	// arrives damaged.
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		writeErr(w, fmt.Errorf("stream import progress: %w", err))
		return
	}
	// An import refused before its end (too large, a line too long) leaves
	// the body unread: closed here, the server does not panic reading the
	// next request under full duplex (golang/go#68560).
	defer r.Body.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	p, err := s.svc.Import(r.Context(), &idleBody{r: r.Body, rc: rc}, opts, func(p ImportProgress) {
		extendDeadlines(rc, false)
		enc.Encode(p)
		_ = rc.Flush()
	})
	if err != nil {
		p.Error = err.Error()
	}
	p.Final = true
	extendDeadlines(rc, false)
	enc.Encode(p)
}

// maxRemoveID bounds one id of a remove request's body.
const maxRemoveID = 4 << 10

// handleRemoveMany removes the grants named in the body, one id a line, or
// with ?state= and/or ?provider= every grant that matches (the body is then
// not read).
func (s *server) handleRemoveMany(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, prov := store.State(q.Get("state")), q.Get("provider")
	if state != "" || prov != "" {
		if state != "" && !state.Valid() {
			writeErr(w, Invalid(fmt.Errorf("unknown state %q (states: %s)", state, stateList())))
			return
		}
		n, err := s.svc.RemoveWhere(state, prov)
		answer(w, RemoveResult{Removed: n}, err)
		return
	}
	var ids []string
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 4096), maxRemoveID)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			ids = append(ids, id)
		}
	}
	if err := sc.Err(); err != nil {
		writeErr(w, Invalid(fmt.Errorf("read the ids to remove (one a line): %w", err)))
		return
	}
	if len(ids) == 0 {
		writeErr(w, Invalid(errors.New("no ids to remove: send one id a line, or ?state= or ?provider=")))
		return
	}
	n, err := s.svc.RemoveIDs(ids)
	answer(w, RemoveResult{Removed: n, Missing: len(ids) - n}, err)
}

// checkProgressEvery is how often a database check reports that it is
// still at work.
var checkProgressEvery = time.Second

// handleCheck runs the database check, streaming a CheckProgress line
// every checkProgressEvery and the outcome as the last line.
func (s *server) handleCheck(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.svc.Check(r.Context()) }()
	t := time.NewTicker(checkProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			extendDeadlines(rc, false)
			enc.Encode(CheckProgress{ElapsedSeconds: time.Since(start).Seconds()})
			_ = rc.Flush()
		case err := <-done:
			extendDeadlines(rc, false)
			p := CheckProgress{ElapsedSeconds: time.Since(start).Seconds(), Final: true, OK: err == nil}
			if err != nil {
				p.Error = err.Error()
				p.Damaged = errors.Is(err, store.ErrCorrupt)
			}
			enc.Encode(p)
			return
		}
	}
}

// handleBackup streams a consistent copy of the database. An error after
// the first byte aborts the answer (no final chunk), so that the client
// never takes a cut copy for a whole one.
func (s *server) handleBackup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	cw := &countWriter{w: w, rc: http.NewResponseController(w)}
	_, err := s.svc.Backup(cw)
	if err == nil {
		return
	}
	if cw.n == 0 {
		writeErr(w, err)
		return
	}
	s.log.Error("back up the database", "err", err)
	panic(http.ErrAbortHandler)
}

// countWriter counts the bytes written through it and extends the write
// deadline before each write: a backup takes as long as the client takes
// to store it, but must not stall.
type countWriter struct {
	w  io.Writer
	rc *http.ResponseController
	n  int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	extendDeadlines(c.rc, false)
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *server) handleNotifyTest(w http.ResponseWriter, r *http.Request) {
	res, err := s.svc.NotifyTest(r.Context(), r.URL.Query().Get("receiver"))
	answer(w, res, err)
}

func (s *server) handleDead(w http.ResponseWriter, r *http.Request) {
	out, err := s.svc.DeadLetters()
	answer(w, out, err)
}

// handleRedeliver puts dead letters back in the outbox: those of receiver
// (every configured receiver if none is given), only the seqs given if any.
func (s *server) handleRedeliver(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	receiver := q.Get("receiver")
	var seqs []uint64
	for _, v := range q["seq"] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeErr(w, Invalid(fmt.Errorf("seq %q: want a dead letter's number, as `grantwatch notify dead` shows it", v)))
			return
		}
		seqs = append(seqs, n)
	}
	if receiver == "" && len(seqs) > 0 {
		writeErr(w, Invalid(errors.New("a dead letter's seq needs its receiver")))
		return
	}
	res, err := s.svc.Redeliver(receiver, seqs)
	answer(w, res, err)
}
