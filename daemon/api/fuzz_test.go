package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// FuzzSetTokenBody sends arbitrary bodies to PUT
// /v1/grants/{id}/refresh_token: the route answers 200, 400 or 413 and
// never panics; the service gets only a non-empty token with no surrounding
// space; and no answer quotes the token the body carried.
func FuzzSetTokenBody(f *testing.F) {
	for _, s := range []string{
		`{"refresh_token":"rt-SEKRET-0451"}`,
		`{"refresh_token":"  rt-SEKRET-0451 \n"}`,
		`{"refresh_token":""}`,
		`{"refresh_token":"   "}`,
		`{"refresh_token":42}`,
		`{"refresh_token":["rt-SEKRET-0451"]}`,
		`{"refresh_token":"rt-SEKRET-0451","extra":"rt-SEKRET-0451"}`,
		`{"refresh_token":"rt-SEKRET-0451"} {"refresh_token":"x"}`,
		`{"refresh_token":"rt-SEKRET-0451`,
		`{"rt-SEKRET-0451":1}`,
		`rt-SEKRET-0451`,
		`null`,
		``,
		`{"refresh_token":"\u0000\u001b[2Jrt"}`,
		strings.Repeat(`{"refresh_token":"`, 100),
	} {
		f.Add([]byte(s))
	}
	var got secret.Secret
	svc := &fakeService{t: nil, setToken: func(_ context.Context, id string, tok secret.Secret) (ProbeReport, error) {
		got = tok
		return ProbeReport{Grant: store.Grant{ID: id}, Result: ResultView{OK: true}}, nil
	}}
	h := Handler(svc, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 2*maxBody {
			return
		}
		svc.t, got = t, ""
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPut, "/v1/grants/g1/refresh_token", bytes.NewReader(body))
		limitBody(maxBody, h).ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			tok := got.Reveal()
			if tok == "" || strings.TrimSpace(tok) != tok {
				t.Fatalf("the service got the token %q", tok)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if got != "" {
				t.Fatalf("answered %d after the service stored a token", rec.Code)
			}
		default:
			t.Fatalf("answered %d: %s", rec.Code, rec.Body)
		}
		var req2 struct {
			RefreshToken any `json:"refresh_token"`
		}
		if json.Unmarshal(body, &req2) == nil {
			if tok, ok := req2.RefreshToken.(string); ok && len(strings.TrimSpace(tok)) >= 8 &&
				strings.Count(string(body), tok) == 1 && strings.Contains(rec.Body.String(), strings.TrimSpace(tok)) {
				t.Fatalf("the answer quotes the token:\n%s", rec.Body)
			}
		}
	})
}

// FuzzGrantIDInPath names arbitrary grant ids in the routes that carry one
// in their path (show, rm, probe), through the Client as the CLI sends
// them: each reaches the service exactly as given, or, for the ids import
// refuses because a path cannot carry them ("", ".", "..", a slash), is
// answered without a panic or a 5xx.
func FuzzGrantIDInPath(f *testing.F) {
	for _, s := range []string{"u1", " sp ace ", "50%", "%2F", "a/b", "..", ".", "", "a#b", "q?x=1",
		"ünïcødé", "\x00", "\xff\xfe", "a\\b", "+&;=", "%", "%zz", "a\x1b[2J", "\u202e"} {
		f.Add(s)
	}
	var seen []string
	svc := &fakeService{
		grant: func(id string) (GrantDetail, error) {
			seen = append(seen, id)
			return GrantDetail{Grant: store.Grant{ID: id}}, nil
		},
		// "/v1/grants/" is the list's path once cleaned.
		grants: func(store.State, string, func(store.Grant) error) error { return nil },
	}
	c := client(f, svc)
	f.Fuzz(func(t *testing.T, id string) {
		seen = seen[:0]
		svc.t = t
		g, err := c.Show(context.Background(), id)
		addressable := id != "" && id != "." && id != ".." && !strings.Contains(id, "/")
		if addressable {
			// (JSON carries invalid UTF-8 as U+FFFD: the answer's id is
			// compared only for valid text, which is all import accepts.)
			if err != nil || len(seen) != 1 || seen[0] != id || utf8.ValidString(id) && g.ID != id {
				t.Fatalf("show %q: %v; the service saw %q, answered %q", id, err, seen, g.ID)
			}
			return
		}
		if len(seen) > 0 && seen[0] != id {
			t.Fatalf("show %q reached the service as %q", id, seen[0])
		}
		// Not addressable: the mux answers (404, a redirect), never a 5xx.
		rec := httptest.NewRecorder()
		req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v1/grants/" + id, RawPath: "/v1/grants/" + url.PathEscape(id)}, Header: http.Header{}}
		Handler(svc, nil).ServeHTTP(rec, req.WithContext(context.Background()))
		if rec.Code >= 500 {
			t.Fatalf("GET /v1/grants/%q: %d", id, rec.Code)
		}
	})
}
