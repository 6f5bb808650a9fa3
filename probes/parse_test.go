package probes

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseAnswer(t *testing.T) {
	cases := []struct {
		name   string
		status int
		ct     string
		body   string
		want   Answer // RetryAfter and Date are checked elsewhere
	}{
		{"rfc 6749 json", 400, ctJSON,
			`{"error":"invalid_grant","error_description":"  Token has been expired or revoked. "}`,
			Answer{Status: 400, Format: "json", Error: "invalid_grant", ErrorDescription: "Token has been expired or revoked."}},
		{"error_codes ints", 400, ctJSON,
			`{"error":"invalid_grant","error_description":"AADSTS70002: x. AADSTS54005: y.","error_codes":[70002,54005]}`,
			Answer{Status: 400, Format: "json", Error: "invalid_grant", ErrorDescription: "AADSTS70002: x. AADSTS54005: y.", ErrorCodes: []int{70002, 54005}}},
		{"error_codes as strings and a float", 400, ctJSON,
			`{"error":"invalid_grant","error_codes":["50173", 1.5, "x", 7]}`,
			Answer{Status: 400, Format: "json", Error: "invalid_grant", ErrorCodes: []int{50173, 7}}},
		{"aadsts code from the description", 400, ctJSON,
			`{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity."}`,
			Answer{Status: 400, Format: "json", Error: "invalid_grant", ErrorDescription: "AADSTS700082: The refresh token has expired due to inactivity.", ErrorCodes: []int{700082}}},
		{"google subtype", 400, ctJSON,
			`{"error":"invalid_grant","error_subtype":"invalid_rapt","error_description":"reauth related error"}`,
			Answer{Status: 400, Format: "json", Error: "invalid_grant", ErrorSubtype: "invalid_rapt", ErrorDescription: "reauth related error"}},
		{"microsoft suberror", 400, ctJSON,
			`{"error":"invalid_grant","suberror":"bad_token"}`,
			Answer{Status: 400, Format: "json", Error: "invalid_grant", ErrorSubtype: "bad_token"}},
		{"slack ok false", 200, ctJSON, `{"ok":false,"error":"invalid_refresh_token"}`,
			Answer{Status: 200, Format: "json", Error: "invalid_refresh_token"}},
		{"hubspot status", 400, ctJSON, `{"status":"BAD_REFRESH_TOKEN","message":"missing or invalid refresh token","correlationId":"c"}`,
			Answer{Status: 400, Format: "json", Error: "BAD_REFRESH_TOKEN", ErrorDescription: "missing or invalid refresh token"}},
		{"zoom reason", 400, ctJSON, `{"reason":"Invalid Token!","error":"invalid_grant"}`,
			Answer{Status: 400, Format: "json", Error: "invalid_grant", ErrorDescription: "Invalid Token!"}},
		{"nested google apis error", 401, ctJSON,
			`{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`,
			Answer{Status: 401, Format: "json", Error: "UNAUTHENTICATED", ErrorDescription: "Request had invalid authentication credentials.", ErrorCodes: []int{401}}},
		{"nested facebook error", 400, ctJSON,
			`{"error":{"message":"Error validating access token: Session has expired.","type":"OAuthException","code":190,"error_subcode":463}}`,
			Answer{Status: 400, Format: "json", Error: "OAuthException", ErrorDescription: "Error validating access token: Session has expired.", ErrorCodes: []int{190, 463}}},
		{"errors list", 400, ctJSON, `{"errors":[{"code":"invalid_token","message":"bad"}]}`,
			Answer{Status: 400, Format: "json", Error: "invalid_token", ErrorDescription: "bad"}},
		{"token json", 200, ctJSON, `{"access_token":"SECRET-AT","refresh_token":"SECRET-RT","expires_in":3600}`,
			Answer{Status: 200, Format: "json", HasAccessToken: true}},
		{"empty access token", 200, ctJSON, `{"access_token":""}`,
			Answer{Status: 200, Format: "json"}},
		{"json without content type", 400, "", `{"error":"invalid_client"}`,
			Answer{Status: 400, Format: "json", Error: "invalid_client"}},
		{"form error", 200, ctForm, `error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired.`,
			Answer{Status: 200, Format: "form", Error: "bad_verification_code", ErrorDescription: "The code passed is incorrect or expired."}},
		{"form token as text/plain", 200, "text/plain", `access_token=SECRET-AT&expires=5183999`,
			Answer{Status: 200, Format: "form", HasAccessToken: true}},
		{"truncated json", 400, ctJSON, `{"error":"invalid_grant","error_descr`,
			Answer{Status: 400, Format: "text"}},
		{"json array", 400, ctJSON, `["invalid_grant"]`, Answer{Status: 400, Format: "text"}},
		{"json null", 400, ctJSON, `null`, Answer{Status: 400, Format: "text"}},
		{"html sent as json", 502, ctJSON, `<html><body>Bad Gateway</body></html>`, Answer{Status: 502, Format: "html"}},
		{"html", 503, ctHTML, `<!DOCTYPE html><html></html>`, Answer{Status: 503, Format: "html"}},
		{"text", 500, "text/plain", `Internal Server Error`, Answer{Status: 500, Format: "text"}},
		{"whitespace only", 502, "", " \n\t", Answer{Status: 502, Format: "empty"}},
		{"nothing", 401, "", "", Answer{Status: 401, Format: "empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseAnswer(tc.status, hdr(tc.ct), []byte(tc.body))
			got.RetryAfter, got.Date = 0, time.Time{}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("ParseAnswer = %+v\nwant            %+v", got, tc.want)
			}
			if s := fmt.Sprintf("%#v", got); strings.Contains(s, "SECRET") {
				t.Errorf("answer holds a token: %s", s)
			}
		})
	}
}

func TestParseAnswerCaps(t *testing.T) {
	long := strings.Repeat("é", 5000) // 2 bytes each: the cap falls inside a rune
	codes := strings.Repeat("1,", 100) + "1"
	body := fmt.Sprintf(`{"error":%q,"error_description":%q,"error_subtype":%q,"error_codes":[%s]}`, long, long, long, codes)
	a := ParseAnswer(400, hdr(ctJSON), []byte(body))
	for name, s := range map[string]string{"error": a.Error, "description": a.ErrorDescription, "subtype": a.ErrorSubtype} {
		if !utf8.ValidString(s) || s == "" {
			t.Errorf("%s: not valid UTF-8 after capping (%d bytes)", name, len(s))
		}
	}
	if len(a.Error) > maxCodeLen || len(a.ErrorSubtype) > maxCodeLen || len(a.ErrorDescription) > maxDescriptionLen {
		t.Errorf("caps exceeded: %d, %d, %d", len(a.Error), len(a.ErrorSubtype), len(a.ErrorDescription))
	}
	if len(a.ErrorCodes) != maxErrorCodes {
		t.Errorf("len(ErrorCodes) = %d, want %d", len(a.ErrorCodes), maxErrorCodes)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	date := now.Add(-time.Hour).Format(http.TimeFormat) // a provider whose clock is an hour behind
	cases := []struct {
		name   string
		status int
		kv     []string
		want   time.Duration
	}{
		{"seconds", 429, []string{"Retry-After", "17"}, 17 * time.Second},
		{"http date relative to now", 503, []string{"Retry-After", now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{"http date relative to Date", 429, []string{"Date", date, "Retry-After", now.Add(-time.Hour + time.Minute).Format(http.TimeFormat)}, time.Minute},
		{"date in the past", 429, []string{"Retry-After", now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"negative seconds", 429, []string{"Retry-After", "-5"}, 0},
		{"garbage", 429, []string{"Retry-After", "soon"}, 0},
		{"huge", 429, []string{"Retry-After", "99999999999"}, maxRetryAfter},
		{"x-ratelimit-reset unix", 429, []string{"X-RateLimit-Reset", fmt.Sprint(now.Add(42 * time.Second).Unix())}, 42 * time.Second},
		{"ratelimit-reset delta", 429, []string{"RateLimit-Reset", "8"}, 8 * time.Second},
		{"reset ignored on 200", 200, []string{"X-RateLimit-Reset", fmt.Sprint(now.Add(time.Hour).Unix())}, 0},
		{"retry-after wins", 429, []string{"Retry-After", "3", "X-RateLimit-Reset", "100"}, 3 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := parseAnswerAt(tc.status, hdr("", tc.kv...), nil, now, nil)
			if a.RetryAfter != tc.want {
				t.Errorf("RetryAfter = %v, want %v", a.RetryAfter, tc.want)
			}
		})
	}
}
