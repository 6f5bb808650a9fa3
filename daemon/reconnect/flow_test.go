package reconnect

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
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
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
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
