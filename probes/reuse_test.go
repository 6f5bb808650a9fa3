package probes

import (
	"net/http"
	"testing"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// TestReuseWordingWithoutPreset: a rotated token presented twice is
// code_reused whatever the provider entry's preset, so that the daemon can
// tell a rotation lost in transit.
func TestReuseWordingWithoutPreset(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name, body string
		want       Cause
	}{
		// Ory Hydra (fosite) answer to a reused refresh token, as the sandbox
		// sends it (probes/sandbox/token.go cites the source).
		{"hydra already used", `{"error":"invalid_grant","error_description":"The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client. The refresh token was already used."}`, CauseCodeReused},
		// Generic wording of reuse detection.
		{"reuse detected", `{"error":"invalid_grant","error_description":"Refresh token reuse detected"}`, CauseCodeReused},
		// Not reuse: Google's ambiguous wording stays invalid_grant.
		{"google", `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`, CauseInvalidGrant},
		// Reuse wording on a 503 is an outage, not a verdict.
		{"503", `{"error":"invalid_grant","error_description":"already used"}`, CauseServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := http.StatusBadRequest
			if tt.name == "503" {
				status = http.StatusServiceUnavailable
			}
			if got := Evaluate("", status, h, []byte(tt.body)).Cause; got != tt.want {
				t.Errorf("cause %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRedactCutTail: a token echoed at the end of a description that the
// parser's cap cut in two is still redacted.
func TestRedactCutTail(t *testing.T) {
	tok := secret.Secret("1//0gABCDEFGHIJKLMNOP")
	res := Result{ErrorDescription: "refresh token 1//0gABCDEFG"}
	redact(&res, tok, "", "")
	if res.ErrorDescription != "refresh token <secret>" {
		t.Fatalf("got %q", res.ErrorDescription)
	}
	res = Result{ErrorDescription: "token 1//0gABCDEFGHIJKLMNOP is invalid"}
	redact(&res, tok, "", "")
	if res.ErrorDescription != "token <secret> is invalid" {
		t.Fatalf("got %q", res.ErrorDescription)
	}
	res = Result{ErrorDescription: "nothing here 1//"}
	redact(&res, tok, "", "")
	if res.ErrorDescription != "nothing here 1//" {
		t.Fatalf("short prefix redacted: %q", res.ErrorDescription)
	}
}
