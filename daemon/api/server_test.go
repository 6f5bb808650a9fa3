package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// fakeService is a Service whose methods are the funcs set; an unset one
// fails the test that reaches it.
type fakeService struct {
	t         *testing.T
	status    func() (Status, error)
	grants    func(store.State, string, func(store.Grant) error) error
	grant     func(string) (GrantDetail, error)
	importFn  func(context.Context, io.Reader, ImportOptions, func(ImportProgress)) (ImportProgress, error)
	removeIDs func([]string) (int, error)
	check     func(context.Context) error
	backup    func(io.Writer) (int64, error)
	redeliver func(string, []uint64) (RedeliverResult, error)
	setToken  func(context.Context, string, secret.Secret) (ProbeReport, error)
	observe   func(context.Context, string, Observation) (ProbeReport, error)
	ready     func() error
	link      func(ctx context.Context, id string, ttl time.Duration, by string) (ReconnectLink, error)
}

func (f *fakeService) missing(name string) error {
	f.t.Errorf("the handler called %s, which this test did not expect", name)
	return errors.New("unexpected call")
}

func (f *fakeService) Status() (Status, error) {
	if f.status == nil {
		return Status{}, f.missing("Status")
	}
	return f.status()
}

func (f *fakeService) Grants(s store.State, p string, fn func(store.Grant) error) error {
	if f.grants == nil {
		return f.missing("Grants")
	}
	return f.grants(s, p, fn)
}

func (f *fakeService) Grant(id string) (GrantDetail, error) {
	if f.grant == nil {
		return GrantDetail{}, f.missing("Grant")
	}
	return f.grant(id)
}

func (f *fakeService) Remove(string) error { return f.missing("Remove") }

func (f *fakeService) ProbeNow(context.Context, string) (ProbeReport, error) {
	return ProbeReport{}, f.missing("ProbeNow")
}

func (f *fakeService) SetToken(ctx context.Context, id string, tok secret.Secret) (ProbeReport, error) {
	if f.setToken == nil {
		return ProbeReport{}, f.missing("SetToken")
	}
	return f.setToken(ctx, id, tok)
}

func (f *fakeService) Observe(ctx context.Context, id string, obs Observation) (ProbeReport, error) {
	if f.observe == nil {
		return ProbeReport{}, f.missing("Observe")
	}
	return f.observe(ctx, id, obs)
}

func (f *fakeService) RemoveIDs(ids []string) (int, error) {
	if f.removeIDs == nil {
		return 0, f.missing("RemoveIDs")
	}
	return f.removeIDs(ids)
}

func (f *fakeService) RemoveWhere(store.State, string) (int, error) {
	return 0, f.missing("RemoveWhere")
}

func (f *fakeService) Import(ctx context.Context, r io.Reader, opts ImportOptions, p func(ImportProgress)) (ImportProgress, error) {
	if f.importFn == nil {
		return ImportProgress{}, f.missing("Import")
	}
	return f.importFn(ctx, r, opts, p)
}

func (f *fakeService) Check(ctx context.Context) error {
	if f.check == nil {
		return f.missing("Check")
	}
	return f.check(ctx)
}

func (f *fakeService) Backup(w io.Writer) (int64, error) {
	if f.backup == nil {
		return 0, f.missing("Backup")
	}
	return f.backup(w)
}

func (f *fakeService) NotifyTest(context.Context, string) ([]NotifyTestResult, error) {
	return nil, f.missing("NotifyTest")
}

func (f *fakeService) DeadLetters() ([]DeadLetter, error) { return nil, f.missing("DeadLetters") }

func (f *fakeService) Redeliver(r string, seqs []uint64) (RedeliverResult, error) {
	if f.redeliver == nil {
		return RedeliverResult{}, f.missing("Redeliver")
	}
	return f.redeliver(r, seqs)
}

func (f *fakeService) Ready() error {
	if f.ready == nil {
		return f.missing("Ready")
	}
	return f.ready()
}

func (f *fakeService) ReconnectLink(ctx context.Context, id string, ttl time.Duration, by string) (ReconnectLink, error) {
	if f.link == nil {
		return ReconnectLink{}, f.missing("ReconnectLink")
	}
	return f.link(ctx, id, ttl, by)
}

// client is the API on svc through the in-process transport, as the CLI
// uses it with no daemon running.
func client(t testing.TB, svc Service) *Client {
	t.Helper()
	c := InProcess(Handler(svc, nil), true, nil)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestErrorsReachTheClient: the store's not-found is 404 and still
// errors.Is(store.ErrNotFound) at the client; Invalid is 400; anything else
// 500; the message arrives whole.
func TestErrorsReachTheClient(t *testing.T) {
	for _, tt := range []struct {
		name     string
		err      error
		code     int
		notFound bool
	}{
		{"not found", fmt.Errorf("grant x: %w", store.ErrNotFound), http.StatusNotFound, true},
		{"invalid", Invalid(errors.New("grant x: provider \"p\" is not configured")), http.StatusBadRequest, false},
		{"other", errors.New("database is damaged"), http.StatusInternalServerError, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc := &fakeService{t: t, grant: func(string) (GrantDetail, error) { return GrantDetail{}, tt.err }}
			rec := httptest.NewRecorder()
			Handler(svc, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/grants/x", nil))
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), `"error"`) {
				t.Errorf("answer %d %s, want %d with an error body", rec.Code, rec.Body, tt.code)
			}
			_, err := client(t, svc).Show(context.Background(), "x")
			if err == nil || err.Error() != tt.err.Error() {
				t.Errorf("client error %v, want %q", err, tt.err)
			}
			if got := errors.Is(err, store.ErrNotFound); got != tt.notFound {
				t.Errorf("errors.Is(err, store.ErrNotFound) = %v, want %v", got, tt.notFound)
			}
		})
	}
}

// TestListErrorAfterTheFirstGrantIsNotAnEndOfList: a store error before any
// grant was sent is an error answer; one after the array's first bytes
// went out (past the write buffer) leaves it unterminated, so the client
// reports the list as cut short rather than presenting a partial fleet as
// the whole.
func TestListErrorAfterTheFirstGrantIsNotAnEndOfList(t *testing.T) {
	damaged := errors.New("page 7: damaged")
	for _, before := range []int{0, 3, 500} {
		t.Run(fmt.Sprint(before, " grants before the error"), func(t *testing.T) {
			svc := &fakeService{t: t, grants: func(_ store.State, _ string, fn func(store.Grant) error) error {
				for i := range before {
					if err := fn(store.Grant{ID: fmt.Sprint("g", i), Provider: "p", State: store.StateHealthy}); err != nil {
						return err
					}
				}
				return damaged
			}}
			var got int
			err := client(t, svc).List(context.Background(), "", "", func(store.Grant) error { got++; return nil })
			if err == nil {
				t.Fatalf("List succeeded after %d grants; want an error", got)
			}
			if before < 500 && !strings.Contains(err.Error(), "damaged") {
				t.Errorf("error %v, want the store's", err)
			}
			if before == 500 && !strings.Contains(err.Error(), "ended early") {
				t.Errorf("error %v, want the list reported as cut short", err)
			}
		})
	}
}

// TestListRefusesUnknownState: a state that does not exist is the caller's
// mistake, named with the states there are, before the store is read.
func TestListRefusesUnknownState(t *testing.T) {
	err := client(t, &fakeService{t: t}).List(context.Background(), "dead", "", func(store.Grant) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `unknown state "dead"`) || !strings.Contains(err.Error(), "reconnect_required") {
		t.Errorf("List(state=dead) = %v, want unknown state naming the states", err)
	}
}

// TestRedeliverChecksSeqs: a seq that is not a dead letter's number, or a
// seq without its receiver, is refused before anything is moved.
func TestRedeliverChecksSeqs(t *testing.T) {
	h := Handler(&fakeService{t: t}, nil)
	for _, q := range []string{"receiver=hook&seq=abc", "receiver=hook&seq=0", "seq=4"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/notify/dead/redeliver?"+q, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: answer %d, want 400", q, rec.Code)
		}
	}
	var got []uint64
	svc := &fakeService{t: t, redeliver: func(r string, seqs []uint64) (RedeliverResult, error) {
		got = seqs
		return RedeliverResult{Requeued: len(seqs)}, nil
	}}
	res, err := client(t, svc).Redeliver(context.Background(), "hook", []uint64{4, 9})
	if err != nil || res.Requeued != 2 || fmt.Sprint(got) != "[4 9]" {
		t.Errorf("Redeliver = %+v, %v (service got %v); want 2 requeued, seqs [4 9]", res, err, got)
	}
}

// TestImportErrorIsTheLastLine: progress streams while the input is read; a
// validation error ends the stream and reaches the client as the error,
// with nothing counted as imported.
func TestImportErrorIsTheLastLine(t *testing.T) {
	svc := &fakeService{t: t, importFn: func(_ context.Context, r io.Reader, _ ImportOptions, progress func(ImportProgress)) (ImportProgress, error) {
		io.Copy(io.Discard, r)
		progress(ImportProgress{Phase: "validating", Read: 2})
		return ImportProgress{}, errors.New("line 3: each line must be a JSON object")
	}}
	var phases []string
	_, err := client(t, svc).Import(context.Background(), strings.NewReader("{}\n{}\n[]\n"), ImportOptions{}, func(p ImportProgress) { phases = append(phases, p.Phase) })
	if err == nil || err.Error() != "line 3: each line must be a JSON object" {
		t.Errorf("Import error %v, want the validation error as sent", err)
	}
	if fmt.Sprint(phases) != "[validating]" {
		t.Errorf("progress phases %v, want [validating]", phases)
	}
}

// TestSetTokenNeverEchoesTheToken: a body that is not the expected shape is
// refused without quoting it, and the token reaches the service intact.
func TestSetTokenNeverEchoesTheToken(t *testing.T) {
	const tok = "rt-SECRET-never-echoed"
	var got secret.Secret
	svc := &fakeService{t: t, setToken: func(_ context.Context, _ string, s secret.Secret) (ProbeReport, error) {
		got = s
		return ProbeReport{}, nil
	}}
	h := Handler(svc, nil)
	for _, body := range []string{`{"refresh_token": 5, "x": "` + tok + `"}`, `{"refresh_token": "` + tok + `", "extra": 1}`, `{"refresh_token": "   "}`} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/grants/g/refresh_token", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), tok) {
			t.Errorf("body %s: answer %d %s; want 400 without the token", body, rec.Code, rec.Body)
		}
	}
	if _, err := client(t, svc).SetToken(context.Background(), "g", secret.Secret(tok)); err != nil || got.Reveal() != tok {
		t.Errorf("SetToken: %v, service got the token intact: %v", err, got.Reveal() == tok)
	}
}

// TestTCPHandlerGuardsTheGrantAPI: on daemon.listen only health, readiness
// and metrics are open; the grant API exists only with keys and answers 401
// without a valid one, 403 for a key without the route's scope. The control
// socket's other routes are never served there.
func TestTCPHandlerGuardsTheGrantAPI(t *testing.T) {
	svc := &fakeService{t: t,
		ready: func() error { return errors.New("scheduler has not ticked yet") },
		grant: func(id string) (GrantDetail, error) { return GrantDetail{Grant: store.Grant{ID: id}}, nil },
		observe: func(_ context.Context, id string, _ Observation) (ProbeReport, error) {
			return ProbeReport{Grant: store.Grant{ID: id}}, nil
		},
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "grantwatch_up 1\n") })
	const tok = "0123456789abcdef-token"
	keys := keySet{tok: {Name: "reader", Scopes: []Scope{ScopeRead}}, "tokenkey-0123456789": {Name: "app", Scopes: []Scope{ScopeToken}},
		"observekey-0123456789": {Name: "observer", Scopes: []Scope{ScopeObserve}}}
	for _, tt := range []struct {
		name, method, path, auth string
		keys                     Keys
		want                     int
	}{
		{"healthz", "GET", "/healthz", "", nil, 200},
		{"readyz not ready", "GET", "/readyz", "", nil, 503},
		{"metrics", "GET", "/metrics", "", nil, 200},
		{"no grant API without keys", "GET", "/v1/grants/g", "", nil, 404},
		{"status is socket-only", "GET", "/v1/status", "Bearer " + tok, keys, 404},
		{"keys are socket-only", "GET", "/v1/keys", "Bearer " + tok, keys, 404},
		{"no bearer", "GET", "/v1/grants/g", "", keys, 401},
		{"wrong bearer", "GET", "/v1/grants/g", "Bearer nope", keys, 401},
		{"right bearer", "GET", "/v1/grants/g", "Bearer " + tok, keys, 200},
		{"key without the scope", "GET", "/v1/grants/g", "Bearer tokenkey-0123456789", keys, 403},
		{"observation without a key", "POST", "/v1/grants/g/observations", "", keys, 401},
		{"observation without the observe scope", "POST", "/v1/grants/g/observations", "Bearer " + tok, keys, 403},
		{"observation with the observe scope", "POST", "/v1/grants/g/observations", "Bearer observekey-0123456789", keys, 200},
		{"no observations without keys", "POST", "/v1/grants/g/observations", "", nil, 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader(`{"status": 200}`)
			}
			req := loopback(httptest.NewRequest(tt.method, tt.path, body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			TCPHandler(svc, nil, metrics, tt.keys).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.want)
			}
			if strings.Contains(rec.Body.String(), tok) {
				t.Error("the answer quotes the token")
			}
		})
	}
}

// TestObservationBody: POST /v1/grants/{id}/observations takes the contract's
// body (status, the answer's body as received, its headers) and passes it on
// whole; anything else is refused with the shape it wants.
func TestObservationBody(t *testing.T) {
	var got Observation
	svc := &fakeService{t: t, observe: func(_ context.Context, id string, obs Observation) (ProbeReport, error) {
		got = obs
		return ProbeReport{Grant: store.Grant{ID: id, State: store.StateReconnectRequired}, Result: ResultView{Cause: "revoked"}}, nil
	}}
	h := Handler(svc, nil)
	for _, body := range []string{`{"status": "400"}`, `{"status": 400, "answer": "x"}`, `[]`, ``} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/grants/g/observations", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `\"status\"`) {
			t.Errorf("body %q: answer %d %s; want 400 naming the shape", body, rec.Code, rec.Body)
		}
	}
	const answer = `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/grants/g/observations",
		strings.NewReader(`{"status": 400, "body": `+strconv.Quote(answer)+`, "headers": {"Date": "Mon, 02 Jan 2006 15:04:05 GMT"}}`)))
	if rec.Code != http.StatusOK || got.Status != 400 || got.Body == nil || *got.Body != answer || got.Headers["Date"] != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Errorf("answer %d %s; service got %+v", rec.Code, rec.Body, got)
	}
	rep, err := client(t, svc).Observe(context.Background(), "g", Observation{Status: 200})
	if err != nil || got.Status != 200 || got.Body != nil || rep.Grant.State != store.StateReconnectRequired {
		t.Errorf("Client.Observe = %+v, %v; service got %+v", rep, err, got)
	}
}

// TestImportQuery: the import route takes replace and force as query
// parameters and hands them to the service; force without replace, or a
// value that is no boolean, is refused before anything is read.
func TestImportQuery(t *testing.T) {
	var got ImportOptions
	svc := &fakeService{t: t, importFn: func(_ context.Context, r io.Reader, opts ImportOptions, _ func(ImportProgress)) (ImportProgress, error) {
		got = opts
		io.Copy(io.Discard, r)
		return ImportProgress{Total: 1, Done: 1}, nil
	}}
	for _, q := range []string{"force=true", "replace=yes please", "replace=true&force=maybe"} {
		rec := httptest.NewRecorder()
		Handler(svc, nil).ServeHTTP(rec, httptest.NewRequest("POST", "/v1/grants?"+strings.ReplaceAll(q, " ", "+"), strings.NewReader("{}\n")))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: answer %d %s, want 400", q, rec.Code, rec.Body)
		}
	}
	for _, want := range []ImportOptions{{}, {Replace: true}, {Replace: true, Force: true}} {
		if _, err := client(t, svc).Import(context.Background(), strings.NewReader("{}\n"), want, nil); err != nil || got != want {
			t.Errorf("Import(%+v): service got %+v, %v", want, got, err)
		}
	}
}

// TestBackupCutShortIsAnError: a backup that fails after its first bytes
// were sent reaches the client as an error, never as a short success that
// would be renamed into place as a whole backup.
func TestBackupCutShortIsAnError(t *testing.T) {
	svc := &fakeService{t: t, backup: func(w io.Writer) (int64, error) {
		n, _ := w.Write(make([]byte, 100<<10))
		return int64(n), errors.New("read a page: damaged")
	}}
	var got strings.Builder
	n, err := client(t, svc).Backup(context.Background(), &got)
	if err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("Backup = %d, %v; want an error saying the copy was cut short", n, err)
	}
	// Before the first byte, the error itself is the answer.
	svc.backup = func(io.Writer) (int64, error) { return 0, errors.New("back up gw.db: database not open") }
	if _, err := client(t, svc).Backup(context.Background(), &got); err == nil || !strings.Contains(err.Error(), "database not open") {
		t.Fatalf("Backup = %v; want the service's error", err)
	}
}

// TestCheckReportsProgressAndDamage: a long check sends progress; damage
// reaches the client as store.ErrCorrupt, with its list.
func TestCheckReportsProgressAndDamage(t *testing.T) {
	old := checkProgressEvery
	checkProgressEvery = time.Millisecond
	defer func() { checkProgressEvery = old }()
	svc := &fakeService{t: t, check: func(ctx context.Context) error {
		time.Sleep(30 * time.Millisecond)
		return fmt.Errorf("check gw.db: %w (1 problems):\ngrants: row 7: not a grant record", store.ErrCorrupt)
	}}
	ticks := 0
	err := client(t, svc).Check(context.Background(), func(time.Duration) { ticks++ })
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "grants: row 7") {
		t.Errorf("Check = %v; want ErrCorrupt with the problem", err)
	}
	if ticks == 0 {
		t.Error("no progress during a long check")
	}
}
