package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// The control API: HTTP+JSON over the unix socket while the daemon runs, and
// the same handler in-process when it does not (see Connect). Every CLI
// command goes through it, so each command has one implementation.

// GrantDetail is a grant with its history (grants show).
type GrantDetail struct {
	store.Grant
	History []store.HistoryEntry `json:"history"`
}

// ProbeReport is the outcome of probing one grant now (grants probe,
// set-token, reconnect).
type ProbeReport struct {
	Grant  store.Grant `json:"grant"`
	Result ResultView  `json:"result"`
	// Stale reports that the grant's token was replaced while the probe ran;
	// the result was dropped.
	Stale bool `json:"stale,omitempty"`
}

// ResultView is a probe result as the API shows it; it never holds a token.
type ResultView struct {
	OK               bool    `json:"ok"`
	Cause            string  `json:"cause,omitempty"`
	Action           string  `json:"action,omitempty"`
	Rule             string  `json:"rule,omitempty"`
	Status           int     `json:"status,omitempty"`
	Error            string  `json:"error,omitempty"`
	ErrorDescription string  `json:"error_description,omitempty"`
	LatencyMS        float64 `json:"latency_ms"`
	Rotated          bool    `json:"rotated,omitempty"`
	Summary          string  `json:"summary,omitempty"`
	Fix              string  `json:"fix,omitempty"`
}

func viewResult(r probes.Result) ResultView {
	return ResultView{
		OK: r.OK, Cause: string(r.Cause), Action: string(r.Action), Rule: r.Rule,
		Status: r.Status, Error: r.Error, ErrorDescription: r.ErrorDescription,
		LatencyMS: float64(r.Latency.Microseconds()) / 1000,
		Rotated:   !r.NewRefreshToken.IsZero(),
		Summary:   r.Cause.Summary(), Fix: r.Cause.Fix(),
	}
}

// ImportProgress is one line of the import answer's progress stream.
type ImportProgress struct {
	// Phase is "validating" (reading the input; nothing is written until
	// all of it is valid) or "writing".
	Phase string `json:"phase,omitempty"`
	// Read counts the input lines read so far.
	Read     int `json:"read,omitempty"`
	Done     int `json:"done"`
	Total    int `json:"total"`
	Created  int `json:"created"`
	Replaced int `json:"replaced"`
	// Final marks the last line.
	Final bool   `json:"final,omitempty"`
	Error string `json:"error,omitempty"`
}

// importProgressEvery is how often an import reports its progress.
var importProgressEvery = 500 * time.Millisecond

// lineReader counts the lines read through it, for import progress.
type lineReader struct {
	r     io.Reader
	lines atomic.Int64
}

func (l *lineReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.lines.Add(int64(bytes.Count(p[:n], []byte{'\n'})))
	return n, err
}

// apiError is the body of every non-2xx answer.
type apiError struct {
	Error string `json:"error"`
}

// Handler is the control API.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("GET /v1/grants", d.handleList)
	mux.HandleFunc("POST /v1/grants", d.handleImport)
	mux.HandleFunc("GET /v1/grants/{id}", d.handleShow)
	mux.HandleFunc("DELETE /v1/grants/{id}", d.handleRemove)
	mux.HandleFunc("POST /v1/grants/{id}/probe", d.handleProbe)
	mux.HandleFunc("PUT /v1/grants/{id}/refresh_token", d.handleSetToken)
	mux.HandleFunc("POST /v1/notify/test", d.handleNotifyTest)
	mux.HandleFunc("GET /v1/notify/dead", d.handleDead)
	mux.HandleFunc("POST /v1/notify/dead/redeliver", d.handleRedeliver)
	return mux
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
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.As(err, &ce):
		code = http.StatusBadRequest
	}
	writeJSON(w, code, apiError{Error: err.Error()})
}

// clientError marks a request's own fault (400).
type clientError struct{ error }

func (e clientError) Unwrap() error { return e.error }

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	state := store.State(r.URL.Query().Get("state"))
	prov := r.URL.Query().Get("provider")
	if state != "" && !state.Valid() {
		writeErr(w, clientError{fmt.Errorf("unknown state %q (states: %s)", state, stateList())})
		return
	}
	// Stream the array: a fleet of a million grants is never held in memory.
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriter(w)
	written, _ := bw.WriteString("[") // what went into bw, sent or not
	first := true
	emit := func(g store.Grant) error {
		if prov != "" && g.Provider != prov {
			return nil
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
	}
	var err error
	if state != "" {
		err = d.db.EachInState(state, prov, emit)
	} else {
		err = d.db.Each(emit)
	}
	if err != nil && bw.Buffered() == written {
		// Nothing was sent yet (a damaged database fails on its first
		// page): the client gets the error itself.
		writeErr(w, err)
		return
	}
	if err != nil {
		// The status line is sent; an unterminated array tells the client.
		d.log.Error("list grants", "err", err)
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

func (d *Daemon) handleShow(w http.ResponseWriter, r *http.Request) {
	g, err := d.db.Get(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	h, err := d.db.History(g.ID)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, GrantDetail{Grant: g, History: h})
}

func (d *Daemon) handleRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.db.Remove(r.PathValue("id")); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": r.PathValue("id")})
}

func (d *Daemon) handleProbe(w http.ResponseWriter, r *http.Request) {
	rep, err := d.ProbeNow(r.Context(), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
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

func (d *Daemon) handleSetToken(w http.ResponseWriter, r *http.Request) {
	var req setTokenRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, clientError{fmt.Errorf("read request: %w", err)})
		return
	}
	if req.RefreshToken.IsZero() {
		writeErr(w, clientError{errors.New("refresh_token is empty")})
		return
	}
	rep, err := d.SetToken(r.Context(), r.PathValue("id"), req.RefreshToken.Secret)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (d *Daemon) handleImport(w http.ResponseWriter, r *http.Request) {
	cfg := d.Config()
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
	flush := func() { _ = rc.Flush() }
	lr := &lineReader{r: r.Body}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(importProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				enc.Encode(ImportProgress{Phase: "validating", Read: int(lr.lines.Load())})
				flush()
			}
		}
	}()
	gs, err := ParseImport(lr, func(p string) bool { _, ok := cfg.Provider(p); return ok })
	close(stop)
	<-stopped
	if err != nil {
		enc.Encode(ImportProgress{Error: err.Error(), Final: true})
		return
	}
	p := ImportProgress{Phase: "writing", Total: len(gs), Read: int(lr.lines.Load())}
	const chunk = 10000
	last := time.Now()
	for i := 0; i < len(gs); i += chunk {
		c, rep, err := d.db.Import(gs[i:min(i+chunk, len(gs))], d.now())
		if err != nil {
			p.Error, p.Final = err.Error(), true
			enc.Encode(p)
			return
		}
		p.Created += c
		p.Replaced += rep
		p.Done = min(i+chunk, len(gs))
		if time.Since(last) > 500*time.Millisecond {
			enc.Encode(p)
			flush()
			last = time.Now()
		}
	}
	p.Final = true
	enc.Encode(p)
	d.Kick()
}

func (d *Daemon) handleNotifyTest(w http.ResponseWriter, r *http.Request) {
	res, err := d.disp.Test(r.Context(), r.URL.Query().Get("receiver"))
	if err != nil {
		writeErr(w, clientError{err})
		return
	}
	out := make([]NotifyTestResult, 0, len(res))
	for _, t := range res {
		v := NotifyTestResult{Receiver: t.Receiver, Status: t.Status, Answer: t.Answer}
		if t.Err != nil {
			v.Error = t.Err.Error()
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

// ProbeNow probes one grant at once, whatever its state, and applies the
// result like a scheduled probe.
func (d *Daemon) ProbeNow(ctx context.Context, id string) (ProbeReport, error) {
	// Claim first, then read the token: the token read is the one no other
	// probe can rotate meanwhile.
	if !d.claim(id) {
		return ProbeReport{}, clientError{fmt.Errorf("grant %s %w; try again in a moment", id, errProbeBusy)}
	}
	defer d.unclaim(id)
	l, err := d.db.GetLease(id)
	if err != nil {
		return ProbeReport{}, err
	}
	p := d.provider(l.Grant.Provider)
	if p == nil {
		return ProbeReport{}, clientError{fmt.Errorf("grant %s: provider %q is not configured", id, l.Grant.Provider)}
	}
	if p.secretErr != nil {
		return ProbeReport{}, clientError{p.secretErr}
	}
	res := d.refresh(ctx, p, l.Token)
	if !res.NewRefreshToken.IsZero() {
		// A scheduled lease of this grant may hold the token just rotated
		// away: its worker must read the token again.
		d.rotated.Store(id, struct{}{})
	}
	out, stale, err := d.apply(l.Grant, p, res)
	if err != nil {
		return ProbeReport{}, err
	}
	g := out.Grant
	if stale {
		if g, err = d.db.Get(id); err != nil {
			return ProbeReport{}, err
		}
	}
	return ProbeReport{Grant: g, Result: viewResult(res), Stale: stale}, nil
}

// SetToken stores a new refresh token for a grant (the user reconnected),
// resets it to pending and probes it once.
func (d *Daemon) SetToken(ctx context.Context, id string, tok secret.Secret) (ProbeReport, error) {
	if _, err := d.db.SetToken(id, tok, d.now()); err != nil {
		return ProbeReport{}, err
	}
	d.log.Info("refresh token replaced", "grant", id)
	// The token is stored: a probe of the old one still in flight (it
	// ends within probe_timeout; its result is dropped as stale) must not
	// turn this into a failure. Wait for it, then probe the new token.
	deadline := time.Now().Add(d.Config().Daemon.ProbeTimeout + 5*time.Second)
	for {
		rep, err := d.ProbeNow(ctx, id)
		if !errors.Is(err, errProbeBusy) || time.Now().After(deadline) {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return ProbeReport{}, fmt.Errorf("new refresh token of %s stored, not probed yet: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errProbeBusy: another probe of the grant is in flight.
var errProbeBusy = errors.New("is being probed right now")

// Status is the fleet's answer to "is everything connected?".
type Status struct {
	// Daemon reports that a running daemon answered (else the database was
	// read directly and runtime fields are empty).
	Daemon     bool                      `json:"daemon"`
	Grants     int                       `json:"grants"`
	ByState    map[string]int            `json:"by_state"`
	ByProvider map[string]map[string]int `json:"by_provider"`
	// NeedsReconnect lists grants in reconnect_required (at most 100; see
	// by_state for the total).
	NeedsReconnect []store.Grant    `json:"needs_reconnect"`
	OnHold         []store.Grant    `json:"on_hold"`
	Providers      []ProviderStatus `json:"providers"`
	Clock          ClockView        `json:"clock"`
	Outbox         OutboxStatus     `json:"outbox"`
	LastTickAt     time.Time        `json:"last_tick_at,omitzero"`
	// NeedsAction is true when a grant needs reconnecting, a grant or
	// provider is held, or the clock is skewed: status exits 1.
	NeedsAction bool `json:"needs_action"`
}

// ProviderStatus is one provider's health.
type ProviderStatus struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Cause string `json:"cause,omitempty"`
}

// ClockView is the clock as status shows it.
type ClockView struct {
	State         string  `json:"state"`
	OffsetSeconds float64 `json:"offset_seconds"`
	Source        string  `json:"source,omitempty"`
	NTPOK         bool    `json:"ntp_ok"`
	NTPOffset     float64 `json:"ntp_offset_seconds"`
	DateOffset    float64 `json:"date_offset_seconds"`
	DateSamples   int     `json:"date_samples"`
}

// OutboxStatus is the notification backlog.
type OutboxStatus struct {
	Pending          int     `json:"pending"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

const statusListMax = 100

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := d.Status()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// Status gathers the fleet's status from the store's counters and the state
// index; it never scans the whole fleet.
func (d *Daemon) Status() (Status, error) {
	st := Status{
		ByState:        map[string]int{},
		ByProvider:     map[string]map[string]int{},
		NeedsReconnect: []store.Grant{},
		OnHold:         []store.Grant{},
	}
	counts, err := d.db.Counts()
	if err != nil {
		return st, err
	}
	for prov, m := range counts {
		pm := map[string]int{}
		for s, n := range m {
			if n == 0 {
				continue
			}
			pm[string(s)] = n
			st.ByState[string(s)] += n
			st.Grants += n
		}
		if len(pm) > 0 {
			st.ByProvider[prov] = pm
		}
	}
	errStop := errors.New("enough")
	collect := func(dst *[]store.Grant) func(store.Grant) error {
		return func(g store.Grant) error {
			if len(*dst) >= statusListMax {
				return errStop
			}
			*dst = append(*dst, g)
			return nil
		}
	}
	for _, s := range []struct {
		state store.State
		dst   *[]store.Grant
	}{{store.StateReconnectRequired, &st.NeedsReconnect}, {store.StateOnHold, &st.OnHold}} {
		if err := d.db.EachInState(s.state, "", collect(s.dst)); err != nil && !errors.Is(err, errStop) {
			return st, err
		}
		sort.Slice(*s.dst, func(i, j int) bool { return (*s.dst)[i].StateChangedAt.Before((*s.dst)[j].StateChangedAt) })
	}
	st.Providers = d.providerStates()
	cs := d.clock.Snapshot()
	st.Clock = ClockView{
		State: string(cs.State), OffsetSeconds: cs.Offset.Seconds(), Source: cs.Source,
		NTPOK: cs.NTPOK, NTPOffset: cs.NTPOffset.Seconds(),
		DateOffset: cs.DateOffset.Seconds(), DateSamples: cs.DateSamples,
	}
	pending, oldest, err := d.db.OutboxStats()
	if err != nil {
		return st, err
	}
	st.Outbox.Pending = pending
	if !oldest.IsZero() {
		st.Outbox.OldestAgeSeconds = d.now().Sub(oldest).Seconds()
	}
	if t := d.lastTick.Load(); t != 0 {
		st.Daemon = true
		st.LastTickAt = time.Unix(0, t)
	}
	st.NeedsAction = st.ByState[string(store.StateReconnectRequired)] > 0 ||
		st.ByState[string(store.StateOnHold)] > 0 || cs.State == ClockSkewed
	for _, p := range st.Providers {
		if p.State != "ok" {
			st.NeedsAction = true
		}
	}
	return st, nil
}
