package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// post sends a refresh-token request for token to h, with extra form fields.
func post(t *testing.T, h http.Handler, token string, extra url.Values) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
	for k, v := range extra {
		form[k] = v
	}
	req := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

type answer struct {
	Error        string `json:"error"`
	Description  string `json:"error_description"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func decode(t *testing.T, w *httptest.ResponseRecorder) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		t.Fatalf("body %q is not JSON: %v", w.Body.String(), err)
	}
	return a
}

func TestRotateReuseRevokesChain(t *testing.T) {
	s := New()
	h := s.Handler()
	s.Add("t0", Rotate)

	tok := "t0"
	issued := []string{tok}
	for i := range 5 {
		w := post(t, h, tok, nil)
		a := decode(t, w)
		if w.Code != http.StatusOK || a.RefreshToken == "" || a.RefreshToken == tok {
			t.Fatalf("refresh %d: got %d %+v, want 200 with a new refresh token", i, w.Code, a)
		}
		tok = a.RefreshToken
		issued = append(issued, tok)
		if got := s.Current("t0"); got != tok {
			t.Fatalf("Current(t0) = %q, want %q", got, tok)
		}
	}

	// Presenting a rotated-away token is reuse: the chain dies, including
	// its current token, as with Hydra.
	w := post(t, h, issued[2], nil)
	if a := decode(t, w); w.Code != http.StatusBadRequest || !strings.Contains(a.Description, "already used") {
		t.Fatalf("reuse: got %d %+v, want 400 already used", w.Code, a)
	}
	if w := post(t, h, tok, nil); w.Code != http.StatusBadRequest {
		t.Fatalf("current token after reuse: got %d, want 400", w.Code)
	}
	if got := s.Stats().Reused; got != 1 {
		t.Errorf("Stats().Reused = %d, want 1", got)
	}

	// Set revives the chain from the named token.
	s.Set(tok, Rotate)
	if w := post(t, h, tok, nil); w.Code != http.StatusOK {
		t.Fatalf("after Set: got %d, want 200", w.Code)
	}
}

func TestAnswers(t *testing.T) {
	s := New()
	s.SetSlowDelay(time.Millisecond)
	h := s.Handler()
	for _, tc := range []struct {
		b           Behavior
		status      int
		contentType string
		retryAfter  string
	}{
		{Healthy, 200, "application/json", ""},
		{Revoked, 400, "application/json", ""},
		{Expired, 400, "application/json", ""},
		{PasswordChanged, 400, "application/json", ""},
		{ServerError, 500, "application/json", ""},
		{BadGateway, 502, "text/html", ""},
		{Unavailable, 503, "text/html", "2"},
		{RateLimited, 429, "application/json", "1"},
		{Slow, 200, "application/json", ""},
		{FormError, 400, "application/x-www-form-urlencoded", ""},
		{Error200, 200, "application/json", ""},
		{InteractionRequired, 400, "application/json", ""},
		{ClockWindow, 400, "application/json", ""},
		{Empty, 200, "application/json", ""},
	} {
		t.Run(string(tc.b), func(t *testing.T) {
			tok := "tok-" + string(tc.b)
			s.Add(tok, tc.b)
			w := post(t, h, tok, nil)
			if w.Code != tc.status {
				t.Errorf("status: got %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("Content-Type"); !strings.HasPrefix(got, tc.contentType) {
				t.Errorf("Content-Type: got %q, want %q", got, tc.contentType)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After: got %q, want %q", got, tc.retryAfter)
			}
			if _, err := http.ParseTime(w.Header().Get("Date")); err != nil {
				t.Errorf("Date %q: %v", w.Header().Get("Date"), err)
			}
			if strings.Contains(w.Body.String(), tok) {
				t.Errorf("body echoes the refresh token: %s", w.Body)
			}
		})
	}
	st := s.Stats()
	if st.Answers[Healthy] != 1 || st.Answers[Empty] != 1 {
		t.Errorf("Stats().Answers = %v, want one of each", st.Answers)
	}
}

func TestUnknownTokenAndBadRequests(t *testing.T) {
	s := New()
	h := s.Handler()
	if w := post(t, h, "nobody", nil); w.Code != 400 || decode(t, w).Description != "Token has been expired or revoked." {
		t.Errorf("unknown token: got %d %s", w.Code, w.Body)
	}
	if w := post(t, h, "nobody", url.Values{"grant_type": {"password"}}); decode(t, w).Error != "unsupported_grant_type" {
		t.Errorf("wrong grant_type: got %d %s", w.Code, w.Body)
	}
	if w := post(t, h, "", nil); decode(t, w).Error != "invalid_request" {
		t.Errorf("no refresh_token: got %d %s", w.Code, w.Body)
	}
	req := httptest.NewRequest(http.MethodGet, TokenPath, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: got %d, want 405", w.Code)
	}
	if st := s.Stats(); st.Unknown != 1 || st.Requests != 4 {
		t.Errorf("Stats() = %+v, want Unknown 1, Requests 4", st)
	}
}

func TestClientAuth(t *testing.T) {
	s := New()
	h := s.Handler()
	s.Add("rt", Healthy)
	const id, secret = "app id", "s3:cr/t+%"
	s.SetClient(id, secret)

	if w := post(t, h, "rt", url.Values{"client_id": {id}, "client_secret": {secret}}); w.Code != 200 {
		t.Errorf("params: got %d %s, want 200", w.Code, w.Body)
	}
	if w := post(t, h, "rt", url.Values{"client_id": {id}, "client_secret": {"wrong"}}); w.Code != 401 || decode(t, w).Error != "invalid_client" {
		t.Errorf("wrong secret: got %d %s, want 401 invalid_client", w.Code, w.Body)
	}
	// Basic, with both parts form-encoded first (RFC 6749 §2.3.1), as
	// x/oauth2 sends it.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt"}}
	req := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()))
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Errorf("basic: got %d %s, want 200", w.Code, w.Body)
	}
	if got := s.Stats().BadClient; got != 1 {
		t.Errorf("Stats().BadClient = %d, want 1", got)
	}
}

func TestSetAllAndClockWindow(t *testing.T) {
	s := New()
	h := s.Handler()
	s.Add("rt", Healthy)
	s.SetAll(BadGateway)
	if w := post(t, h, "rt", nil); w.Code != http.StatusBadGateway {
		t.Errorf("SetAll(BadGateway): got %d, want 502", w.Code)
	}
	s.SetAll("")
	if w := post(t, h, "rt", nil); w.Code != http.StatusOK {
		t.Errorf("SetAll(\"\"): got %d, want 200", w.Code)
	}

	s.Set("rt", ClockWindow)
	s.SetClockWindow(5 * time.Minute)
	s.SetDateSkew(10 * time.Minute)
	w := post(t, h, "rt", nil)
	if w.Code != 400 {
		t.Errorf("skew 10m > window 5m: got %d, want 400", w.Code)
	}
	date, _ := http.ParseTime(w.Header().Get("Date"))
	if d := time.Until(date); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("Date is %v ahead, want about 10m", d)
	}
	s.SetDateSkew(0)
	if w := post(t, h, "rt", nil); w.Code != 200 {
		t.Errorf("skew 0: got %d, want 200", w.Code)
	}
}

func TestStartServesOverLoopback(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.TokenURL(), "http://127.0.0.1:") {
		t.Fatalf("TokenURL() = %q, want loopback", s.TokenURL())
	}
	s.Add("rt", Hang)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.PostForm(s.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt"}})
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	// Close releases the hanging request.
	for s.Stats().Concurrent == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Close()
	<-done
	s.Close() // twice is fine
}

func TestParseForm(t *testing.T) {
	var r tokenRequest
	if err := parseForm([]byte("x=1&grant_type=refresh_token&refresh_token=a%2Bb+c&client_id=id&&client_secret=%zz"), &r); err == nil {
		t.Fatal("bad escape: got nil error")
	}
	r = tokenRequest{}
	if err := parseForm([]byte("grant_type=refresh_token&refresh_token=a%2Bb+c&client_id=id"), &r); err != nil {
		t.Fatal(err)
	}
	if want := (tokenRequest{grantType: "refresh_token", refreshToken: "a+b c", clientID: "id"}); r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
}
