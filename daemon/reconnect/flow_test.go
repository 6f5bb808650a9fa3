package reconnect

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// jwt is an unsigned JWT with these claims (JSON).
func jwt(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(claims)) + "."
}

func TestParseIDToken(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    Account
		wantErr string
	}{
		{"sub and email", jwt(`{"sub":"1","email":"ann@example.com","email_verified":true,"aud":"cli"}`),
			Account{Subject: "1", Email: "ann@example.com"}, ""},
		// Microsoft Entra names the account in preferred_username.
		{"preferred_username, aud list", jwt(`{"sub":"x","preferred_username":"ann@contoso.com","aud":["other","cli"]}`),
			Account{Subject: "x", Username: "ann@contoso.com"}, ""},
		// An unverified address may be anyone's.
		{"unverified email dropped", jwt(`{"sub":"1","email":"ann@example.com","email_verified":false}`),
			Account{Subject: "1"}, ""},
		{"unverified as a string", jwt(`{"sub":"1","email":"ann@example.com","email_verified":"false"}`),
			Account{Subject: "1"}, ""},
		{"another client's token", jwt(`{"sub":"1","aud":"other"}`), Account{}, "another client"},
		{"not a JWT", "abc", Account{}, "not a JWT"},
		{"claims not JSON", "e30." + base64.RawURLEncoding.EncodeToString([]byte("{")) + ".", Account{}, "not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIDToken(tt.raw, "cli")
			checkAccountRead(t, got, err, tt.want, tt.wantErr)
		})
	}
}

// checkAccountRead checks an account read from a provider's answer: want,
// or with wantErr an error saying it.
func checkAccountRead(t *testing.T, got Account, err error, want Account, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("error %v, want one saying %q", err, wantErr)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
}

func TestCheckAccount(t *testing.T) {
	ann := Account{Subject: "sub-1", Email: "Ann@Example.com"}
	tests := []struct {
		name    string
		a       Account
		subject string
		strict  bool
		ok      bool
	}{
		{"email, any case", ann, "ann@example.com", true, true},
		{"sub", ann, "sub-1", true, true},
		{"sub is exact", ann, "SUB-1", true, false},
		{"another account", ann, "bob@example.com", false, false},
		{"grant without subject", ann, "", true, true},
		// The loopback flow trusts the operator; the hosted link does not.
		{"unknown account, operator", Account{}, "ann@example.com", false, true},
		{"unknown account, hosted link", Account{}, "ann@example.com", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckAccount(tt.a, tt.subject, tt.strict)
			if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrAccountMismatch) {
				t.Errorf("CheckAccount = %v, want ok %v (else ErrAccountMismatch)", err, tt.ok)
			}
		})
	}
}

// TestReconnectRefusesAnotherAccount: the user of grantwatch reconnect signs
// in as someone else than the grant's subject; no token comes back.
func TestReconnectRefusesAnotherAccount(t *testing.T) {
	sb := reconnectSandbox(t)
	sb.SetAccount("mallory@example.com")
	cfg := testConfig(t, t.TempDir(), reconnectProvider("p", "", sb.AuthURL(), sb.TokenURL()))
	authURL, res := startReconnect(t, cfg, "p", func(o *Options) { o.Subject, o.LoginHint = "ann@example.com", "ann@example.com" })
	resp, page := visit(t, http.DefaultClient, authURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "another account") {
		t.Errorf("callback page: got %d %q, want one saying another account signed in", resp.StatusCode, page)
	}
	r := wait(t, res)
	if !errors.Is(r.err, ErrAccountMismatch) || !strings.Contains(r.err.Error(), "mallory@example.com") || !r.tok.IsZero() {
		t.Errorf("Reconnect = token set %v, %v; want no token and ErrAccountMismatch naming mallory", !r.tok.IsZero(), r.err)
	}
}

// userInfoFlow is a flow for a GitHub-preset provider on the sandbox's
// authorization and token endpoints, without openid, whose userinfo_url is
// userInfoURL; code is the sandbox's code for it, as after consent.
func userInfoFlow(t *testing.T, sb *sandbox.Server, userInfoURL string) (f *Flow, code string) {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), reconnectProvider("gh", "github", sb.AuthURL(), sb.TokenURL())+
		fmt.Sprintf("userinfo_url = %q\n", userInfoURL))
	p, _ := cfg.Provider("gh")
	p.Scopes = []string{"read:user"} // no openid: no id_token
	f, err := NewFlow(p, "http://127.0.0.1:1/callback", FlowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noFollow.Get(f.AuthCodeURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorization: %d to %q, want a redirect with a code", resp.StatusCode, resp.Header.Get("Location"))
	}
	return f, loc.Query().Get("code")
}

// TestExchangeAccountFromUserInfo: with no id_token the account comes from
// the userinfo endpoint, read by the preset's member names (GitHub: id and
// login, docs.github.com/en/rest/users/users); the account check then
// passes the grant's account and refuses another.
func TestExchangeAccountFromUserInfo(t *testing.T) {
	sb := reconnectSandbox(t)
	sb.SetAccount("ann@example.com")
	f, code := userInfoFlow(t, sb, sb.UserInfoURL())
	res, err := f.Exchange(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox's email is GitHub's public email: not read.
	if res.Account.Username != "ann" || res.Account.Subject == "" || res.Account.Email != "" || res.RefreshToken.IsZero() {
		t.Fatalf("Exchange = %+v (token set %v); want login ann, a numeric id, no email", res.Account, !res.RefreshToken.IsZero())
	}
	if err := CheckAccount(res.Account, "ann", true); err != nil {
		t.Errorf("CheckAccount(ann) = %v, want the grant's account accepted", err)
	}
	if err := CheckAccount(res.Account, res.Account.Subject, true); err != nil {
		t.Errorf("CheckAccount(id) = %v, want the grant's account accepted", err)
	}
	if err := CheckAccount(res.Account, "bob", true); !errors.Is(err, ErrAccountMismatch) || !strings.Contains(err.Error(), "signed in as ann") {
		t.Errorf("CheckAccount(bob) = %v, want ErrAccountMismatch naming ann", err)
	}
}

// TestExchangeUserInfoFails: a userinfo call that fails is an *Error naming
// the provider and the status, with the answer's message (GitHub's 401
// body, as captured in github.com/hisxo/gitGraber/issues/32), and never the
// access token, even when the answer quotes it.
func TestExchangeUserInfoFails(t *testing.T) {
	var seen string
	ui := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"message":"Bad credentials %s","documentation_url":"https://docs.github.com/rest"}`, seen)
	}))
	t.Cleanup(ui.Close)
	sb := reconnectSandbox(t)
	f, code := userInfoFlow(t, sb, ui.URL+"/user")
	_, err := f.Exchange(context.Background(), code)
	var re *Error
	if !errors.As(err, &re) || re.Stage != "userinfo" || re.Status != http.StatusUnauthorized || re.Provider != "gh" {
		t.Fatalf("Exchange = %v, want an *Error of stage userinfo, HTTP 401, provider gh", err)
	}
	if !sb.AccessTokenLive(seen) {
		t.Fatalf("the userinfo endpoint was sent %q, want the new access token", seen)
	}
	if msg := err.Error(); strings.Contains(msg, seen) || !strings.Contains(msg, "Bad credentials") || !strings.Contains(msg, "HTTP 401") {
		t.Errorf("error %q: want the status and the message, without the access token", msg)
	}

	// No answer at all: the same kind of error.
	ui.Close()
	f, code = userInfoFlow(t, sb, ui.URL+"/user")
	if _, err := f.Exchange(context.Background(), code); !errors.As(err, &re) || re.Code != "no answer" {
		t.Errorf("Exchange with the endpoint down = %v, want an *Error saying no answer", err)
	}
}

// TestUserInfoMembers: the answer's members by the names given, numbers as
// strings, an unverified email dropped, an answer naming nobody refused.
func TestUserInfoMembers(t *testing.T) {
	tests := []struct {
		name, body string
		want       Account
		wantErr    string
	}{
		// Atlassian's /me (developer.atlassian.com/cloud/oauth/getting-started/faq).
		{"atlassian", `{"account_type":"atlassian","account_id":"112233aa-bb11-cc22-33dd-445566abcabc","email":"mia@example.com","nickname":"mkrystof"}`,
			Account{Subject: "112233aa-bb11-cc22-33dd-445566abcabc", Email: "mia@example.com", Username: "mkrystof"}, ""},
		// GitHub's id is a number (docs.github.com/en/rest/users/users).
		{"numeric id", `{"login":"octocat","id":1,"sub":null}`, Account{Subject: "1", Username: "octocat"}, ""},
		{"unverified email", `{"sub":"x","email":"a@example.com","email_verified":false}`, Account{Subject: "x"}, ""},
		{"nobody", `{"name":"Ann"}`, Account{}, "none of sub, id"},
		{"no JSON", `<html>`, Account{}, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tt.body) }))
			defer srv.Close()
			f := &Flow{provider: config.ProviderConfig{Name: "p"}, hc: srv.Client()}
			ui := probes.GenericUserInfo
			ui.URL = srv.URL
			ui.Username = slices.Concat(ui.Username, []string{"nickname"})
			got, err := f.userInfo(context.Background(), ui, "tok")
			checkAccountRead(t, got, err, tt.want, tt.wantErr)
		})
	}
}
