// Package api is grantwatch's control API: its routes, its request and
// answer types, and the Client the CLI uses. It is served on the control
// socket by a running daemon, or in-process on an opened database when none
// runs, so every command has one implementation. The handlers call only the
// Service interface declared here; they never reach into the runtime.
package api

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// Service is what the control API calls; *daemon.Daemon implements it.
// Errors wrapping store.ErrNotFound answer 404, those made with Invalid 400,
// the rest 500.
type Service interface {
	// Status gathers the fleet's status.
	Status() (Status, error)
	// Grants calls fn for every grant, or those in state and of provider
	// when non-empty, in storage order.
	Grants(state store.State, provider string, fn func(store.Grant) error) error
	// Grant returns one grant with its history.
	Grant(id string) (GrantDetail, error)
	// Remove deletes a grant.
	Remove(id string) error
	// ProbeNow probes a grant at once and applies the result.
	ProbeNow(ctx context.Context, id string) (ProbeReport, error)
	// SetToken stores a new refresh token and probes it once.
	SetToken(ctx context.Context, id string, tok secret.Secret) (ProbeReport, error)
	// Import reads JSON Lines of grants and stores them, calling progress
	// (never concurrently) as it goes; nothing is written unless every line
	// is valid.
	Import(ctx context.Context, r io.Reader, progress func(ImportProgress)) (ImportProgress, error)
	// NotifyTest sends a test notification to receiver, or to all with "".
	NotifyTest(ctx context.Context, receiver string) ([]NotifyTestResult, error)
	// DeadLetters lists the notifications no receiver accepted.
	DeadLetters() ([]DeadLetter, error)
	// Redeliver puts dead letters back in the outbox.
	Redeliver(receiver string, seqs []uint64) (RedeliverResult, error)
	// Ready reports why the daemon is not ready, or nil.
	Ready() error
}

// Invalid marks err as the request's own fault: it answers 400.
func Invalid(err error) error { return clientError{err} }

// clientError marks a request's own fault (400).
type clientError struct{ error }

func (e clientError) Unwrap() error { return e.error }

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
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/grants", s.handleList)
	mux.HandleFunc("POST /v1/grants", s.handleImport)
	mux.HandleFunc("GET /v1/grants/{id}", s.handleShow)
	mux.HandleFunc("DELETE /v1/grants/{id}", s.handleRemove)
	mux.HandleFunc("POST /v1/grants/{id}/probe", s.handleProbe)
	mux.HandleFunc("PUT /v1/grants/{id}/refresh_token", s.handleSetToken)
	mux.HandleFunc("POST /v1/notify/test", s.handleNotifyTest)
	mux.HandleFunc("GET /v1/notify/dead", s.handleDead)
	mux.HandleFunc("POST /v1/notify/dead/redeliver", s.handleRedeliver)
	return mux
}

// TCPHandler serves /metrics, /healthz, /readyz and, when token is set, the
// grant API for apps whose users just reconnected (GET a grant, PUT its
// refresh token), behind that bearer token.
func TCPHandler(svc Service, log *slog.Logger, metrics http.Handler, token secret.Secret) http.Handler {
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
	if !token.IsZero() {
		guard := requireBearer(token, Handler(svc, log))
		mux.Handle("GET /v1/grants/{id}", guard)
		mux.Handle("PUT /v1/grants/{id}/refresh_token", guard)
	}
	return mux
}

func requireBearer(tok secret.Secret, next http.Handler) http.Handler {
	want := []byte("Bearer " + tok.Reveal())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="grantwatch"`)
			writeJSON(w, http.StatusUnauthorized, ErrorBody{Error: "missing or wrong bearer token (daemon.api_token_file)"})
			return
		}
		next.ServeHTTP(w, r)
	})
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
	var nl *NotLeaderError
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.As(err, &ce):
		code = http.StatusBadRequest
	case errors.As(err, &nl):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(nl.RetryAfter.Seconds()))))
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
	// Stream the array: a fleet of a million grants is never held in memory.
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriter(w)
	written, _ := bw.WriteString("[") // what went into bw, sent or not
	first := true
	err := s.svc.Grants(state, prov, func(g store.Grant) error {
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
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
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

func (s *server) handleImport(w http.ResponseWriter, r *http.Request) {
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
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	p, err := s.svc.Import(r.Context(), r.Body, func(p ImportProgress) {
		enc.Encode(p)
		_ = rc.Flush()
	})
	if err != nil {
		p.Error = err.Error()
	}
	p.Final = true
	enc.Encode(p)
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
