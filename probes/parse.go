package probes

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Caps on what ParseAnswer keeps of an answer. A token endpoint's error is a
// code and a sentence; anything longer is a page we do not need whole, and
// the fields end up in logs, notifications and the store.
const (
	maxCodeLen        = 128  // Error and ErrorSubtype, in bytes
	maxDescriptionLen = 1024 // ErrorDescription, in bytes
	maxErrorCodes     = 16   // entries of ErrorCodes
	maxTexts          = 8    // entries of Texts
	maxRetryAfter     = 24 * time.Hour
)

// ParseAnswer parses a token endpoint's answer: status, headers and body as
// sent. body must already be capped by the caller (the refresh probe reads at
// most 1 MiB).
//
// It reads JSON objects of any error shape (see collectJSON: RFC 6749 §5.2
// fields, Microsoft's error_codes, Google's error_subtype or Microsoft's
// suberror, nested errors, errors lists, {"status","message"} and others),
// application/x-www-form-urlencoded bodies (GitHub, old Facebook), and an
// HTTP 200 carrying an error, keeping every human-readable text with the
// member it came from (Answer.Texts). A plain-text body is Format "text"
// and read as one text; HTML is "html" and "empty" is empty, neither read;
// invalid or truncated JSON is "text" but not read, since a body that
// cannot be parsed says nothing about the grant.
//
// It never keeps a token: only HasAccessToken. RetryAfter comes from
// Retry-After (delay-seconds, or an HTTP date taken relative to the Date
// header, else to now) or, on a 429 or 503 without it, from X-RateLimit-Reset
// / RateLimit-Reset (delta seconds, or Unix seconds when larger than 10^9);
// it is capped at 24h. Date is the Date header.
func ParseAnswer(status int, h http.Header, body []byte) Answer {
	return parseAnswerAt(status, h, body, time.Now(), nil)
}

// tokenParts are the parts of a token answer that are not about errors: the
// refresh probe's only way to them, so that a token answer is decoded once.
// They go into Result's secret fields and nowhere else.
type tokenParts struct {
	refresh, access, tokenType, scope string
	// expiresIn is the answer's expires_in in seconds, 0 when absent or
	// not a positive number.
	expiresIn int64
}

// parseAnswerAt is ParseAnswer with the current time given, for tests. When
// tp is not nil it receives the answer's tokens (a rotated refresh_token, the
// access_token with its type, scope and lifetime).
func parseAnswerAt(status int, h http.Header, body []byte, now time.Time, tp *tokenParts) Answer {
	a := Answer{Status: status}
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		a.Date = d
	}
	a.RetryAfter = retryAfter(status, h, a.Date, now)

	trimmed := bytes.TrimSpace(body)
	ct := ""
	if len(trimmed) > 0 && trimmed[0] != '{' { // an object is JSON whatever its type says
		ct, _, _ = mime.ParseMediaType(h.Get("Content-Type"))
	}
	switch {
	case len(trimmed) == 0:
		a.Format = "empty"
	case trimmed[0] == '{' || isJSONType(ct) && !looksLikeForm(trimmed):
		if !parseJSON(&a, trimmed, tp) {
			a.Format = sniffText(trimmed)
		}
	case looksLikeForm(trimmed):
		// Before the Content-Type: a form body sent as JSON, or as PHP's
		// default text/html, is still a token answer (and may carry a
		// rotated refresh token).
		if !parseForm(&a, trimmed, tp) {
			a.Format = "text"
		}
	case trimmed[0] == '<' || ct == "text/html" || ct == "application/xhtml+xml":
		a.Format = "html"
	case ct == "application/x-www-form-urlencoded":
		if !parseForm(&a, trimmed, tp) {
			a.Format = "text"
		}
	default:
		a.Format = "text"
		// A plain-text answer ("Invalid grant_type") is read as one text,
		// if it is text (valid UTF-8); a truncated or broken JSON object
		// (also "text") is not, since half an answer is no verdict.
		head := trimmed
		if len(head) > maxDescriptionLen+utf8.UTFMax {
			head = head[:maxDescriptionLen+utf8.UTFMax]
			for i := 0; i < utf8.UTFMax && !utf8.Valid(head); i++ {
				head = head[:len(head)-1] // a rune the cut split
			}
		}
		if utf8.Valid(head) {
			a.addText("body", string(head))
		}
	}
	if len(a.ErrorCodes) == 0 && len(a.Texts) > 0 {
		if a.ErrorCodes = aadstsCodes(a.Texts[0].Value); a.ErrorCodes != nil {
			a.CodesFrom = a.Texts[0].From
		}
	}
	return a
}

func isJSONType(ct string) bool {
	return ct == "application/json" || strings.HasSuffix(ct, "+json") || ct == "text/json"
}

// sniffText tells an HTML page sent as JSON (some gateways do) from text.
func sniffText(b []byte) string {
	if b[0] == '<' {
		return "html"
	}
	return "text"
}

// looksLikeForm reports whether a body without a helpful Content-Type is a
// form-encoded token answer ("error=bad_verification_code&error_description=...").
// GitHub and old Facebook send those as text/plain too.
func looksLikeForm(b []byte) bool {
	if bytes.ContainsAny(b, " \n\t<{") {
		return false
	}
	return bytes.HasPrefix(b, []byte("error=")) || bytes.HasPrefix(b, []byte("access_token=")) ||
		bytes.Contains(b, []byte("&error=")) || bytes.Contains(b, []byte("&access_token="))
}

func parseForm(a *Answer, b []byte, tp *tokenParts) bool {
	v, err := url.ParseQuery(string(b))
	if err != nil || (!v.Has("error") && !v.Has("access_token")) {
		return false
	}
	if tp != nil {
		*tp = tokenParts{
			refresh:   strings.TrimSpace(v.Get("refresh_token")),
			access:    strings.TrimSpace(v.Get("access_token")),
			tokenType: strings.TrimSpace(v.Get("token_type")),
			scope:     strings.TrimSpace(v.Get("scope")),
			expiresIn: expiresIn(v.Get("expires_in")),
		}
	}
	a.Format = "form"
	a.setError(v.Get("error"), "error")
	a.addText("error_description", v.Get("error_description"))
	if a.ErrorSubtype = capString(v.Get("error_subtype"), maxCodeLen); a.ErrorSubtype != "" {
		a.SubtypeFrom = "error_subtype"
	}
	a.HasAccessToken = v.Get("access_token") != ""
	if a.HasAccessToken {
		for _, k := range lifetimeKeys {
			if v.Has(k) {
				a.announce(lifetime(v.Get(k)))
			}
		}
	}
	return true
}

// parseJSON fills a from a JSON object. It reports false when b is not a JSON
// object. Answer only records whether an access token is there; the tokens
// go to tp (if not nil).
func parseJSON(a *Answer, b []byte, tp *tokenParts) bool {
	return tokenJSON(a, b, tp) || parseJSONObject(a, b, tp)
}

// tokenJSON is parseJSON for the answer nearly every probe gets: a token,
// with no error field anywhere. It decodes into a struct, a third of the
// cost of parseJSONObject's map, and fills a (and tp) exactly as
// parseJSONObject would; anything else — an "error" in any letter case, a
// key that encoding/json's case-insensitive matching could confuse (a key
// differing in letter case, or any non-ASCII byte: json folds "ſ" to "s"),
// a \u escape (which can spell a key), trailing data, an access_token that
// is not a non-empty string — reports false and takes the general path.
// (FuzzEvaluate checks the two agree.)
func tokenJSON(a *Answer, b []byte, tp *tokenParts) bool {
	if bytes.Contains(b, []byte(`\u`)) || countFold(b, "error") > 0 || !isASCII(b) ||
		countFold(b, "access_token") != 1 || !bytes.Contains(b, []byte(`"access_token"`)) {
		return false
	}
	switch countFold(b, "refresh_token") {
	case 0:
	case 1:
		if !bytes.Contains(b, []byte(`"refresh_token"`)) {
			return false
		}
	default:
		return false
	}
	for _, k := range tokenKeys {
		if n := countFold(b, k); n > 1 || n != bytes.Count(b, []byte(k)) {
			return false
		}
	}
	for _, k := range lifetimeKeys {
		// Each at most once and in lower case, so that the struct decode
		// (whose key match ignores case) reads what the map decode reads.
		q := `"` + k + `"`
		if n := countFold(b, q); n > 1 || n != bytes.Count(b, []byte(q)) {
			return false
		}
	}
	var t struct {
		AccessToken  string          `json:"access_token"`
		RefreshToken json.RawMessage `json:"refresh_token"`
		// Strings and a number (json.Number takes a quoted one too); a
		// value of another type fails the decode and takes the general path.
		TokenType string      `json:"token_type"`
		Scope     string      `json:"scope"`
		ExpiresIn json.Number `json:"expires_in"`
		// Lifetimes: a number or a quoted one, whatever their type (see
		// jsonLifetime); json.RawMessage takes any value, as the map does.
		Lifetime  json.RawMessage `json:"refresh_token_expires_in"`
		XLifetime json.RawMessage `json:"x_refresh_token_expires_in"`
		KLifetime json.RawMessage `json:"refresh_expires_in"`
	}
	if json.Unmarshal(b, &t) != nil || t.AccessToken == "" {
		return false
	}
	a.Format, a.HasAccessToken = "json", true
	if tp != nil {
		tp.access = strings.TrimSpace(t.AccessToken)
		tp.refresh, _ = jsonString(t.RefreshToken)
		tp.tokenType = strings.TrimSpace(t.TokenType)
		tp.scope = strings.TrimSpace(t.Scope)
		tp.expiresIn = expiresIn(string(t.ExpiresIn))
	}
	for _, raw := range []json.RawMessage{t.Lifetime, t.XLifetime, t.KLifetime} {
		a.announce(jsonLifetime(raw))
	}
	return true
}

// lifetimeKeys are the members in which a token answer announces its refresh
// token's lifetime, in seconds: refresh_token_expires_in (GitHub App user
// tokens, LinkedIn, Google's time-based access), Intuit's
// x_refresh_token_expires_in, Keycloak's refresh_expires_in (0 there: an
// offline token, which does not expire).
var lifetimeKeys = []string{"refresh_token_expires_in", "x_refresh_token_expires_in", "refresh_expires_in"}

// announce records a lifetime a token answer announced; the shortest wins.
func (a *Answer) announce(d time.Duration) {
	if d > 0 && (a.RefreshExpiresIn == 0 || d < a.RefreshExpiresIn) {
		a.RefreshExpiresIn = d
	}
}

// jsonLifetime reads a lifetime member: a number of seconds, or one
// quoted (GitHub has sent "15811200").
func jsonLifetime(raw json.RawMessage) time.Duration {
	if s, ok := jsonString(raw); ok {
		return lifetime(s)
	}
	return lifetime(string(raw))
}

// maxLifetime caps an announced lifetime: ten years is beyond any
// provider's (Intuit's five years is the longest documented).
const maxLifetime = 10 * 366 * 24 * time.Hour

// lifetime reads a number of seconds (a fraction is cut); 0 when it is not a
// positive number.
func lifetime(s string) time.Duration {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(f > 0) {
		return 0
	}
	if f >= maxLifetime.Seconds() {
		return maxLifetime
	}
	return time.Duration(f) * time.Second
}

// isASCII reports whether b holds only ASCII bytes.
func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// tokenKeys are the quoted keys of a token answer besides the two tokens
// that tokenJSON reads: each must appear at most once and only in lower
// case for the struct decode to read what the map decode reads.
var tokenKeys = []string{`"token_type"`, `"scope"`, `"expires_in"`}

// jsonExpiresIn reads expires_in as a number or a numeric string (some
// providers quote it).
func jsonExpiresIn(raw json.RawMessage) int64 {
	if len(raw) == 0 {
		return 0
	}
	if s, ok := jsonString(raw); ok {
		return expiresIn(s)
	}
	return expiresIn(string(raw))
}

// expiresIn reads a lifetime in seconds; 0 when it is not a positive
// number (a fraction is cut to whole seconds), at most a year.
func expiresIn(s string) int64 {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != f {
			return 0
		}
		n = int64(min(max(f, 0), maxExpiresIn))
	}
	return min(max(n, 0), maxExpiresIn)
}

// maxExpiresIn caps a token's lifetime, in seconds: a year.
const maxExpiresIn = 366 * 24 * 3600

// countFold counts the occurrences of the ASCII lower-case word in b, in any
// letter case.
func countFold(b []byte, word string) int {
	n := 0
	for i := 0; i+len(word) <= len(b); i++ {
		if b[i]|0x20 == word[0] && asciiEqualFold(b[i:i+len(word)], word) {
			n++
		}
	}
	return n
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := range len(lower) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseJSONObject is parseJSON for any object.
func parseJSONObject(a *Answer, b []byte, tp *tokenParts) bool {
	var m map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil || m == nil {
		return false
	}
	a.Format = "json"
	if raw, ok := m["access_token"]; ok {
		var s string
		a.HasAccessToken = json.Unmarshal(raw, &s) == nil && s != ""
	}
	if tp != nil {
		if a.HasAccessToken {
			tp.access, _ = jsonString(m["access_token"])
		}
		tp.refresh, _ = jsonString(m["refresh_token"])
		tp.tokenType, _ = jsonString(m["token_type"])
		tp.scope, _ = jsonString(m["scope"])
		tp.expiresIn = jsonExpiresIn(m["expires_in"])
	}

	if a.HasAccessToken {
		for _, k := range lifetimeKeys {
			if raw, ok := m[k]; ok {
				a.announce(jsonLifetime(raw))
			}
		}
	}
	if _, ok := m["error"]; a.HasAccessToken && !ok {
		return true // a token answer: no error fields to read (as tokenJSON)
	}
	collectJSON(a, m)
	return true
}

// The members read as an error's words, in the order they are trusted.
// descKeys are an error's own description (RFC 6749 §5.2, Ory Hydra's
// legacy error_hint and error_debug); wordKeys are generic members that
// may hold anything from "Bad Request" to the whole story (HubSpot's and
// Twitch's message, RFC 7807's detail and title, Okta's errorSummary);
// entryKeys are read in a nested error object and in each entry of an
// errors list.
var (
	descKeys  = []string{"error_description", "error_message", "errorMessage", "error_hint", "error_debug"}
	wordKeys  = []string{"message", "detail", "title", "reason", "description", "errorSummary", "error_summary", "msg"}
	entryKeys = []string{"error_description", "message", "description", "detail", "title", "error_message", "errorMessage", "msg"}
	// codeKeys name an error code in an object without an "error" string
	// (HubSpot status, Okta errorCode, Fitbit errorType, Facebook type).
	codeKeys = []string{"errorCode", "error_code", "errorType", "code", "status", "type"}
)

// maxEntries is how many entries of an errors list are read.
const maxEntries = 4

// collectJSON fills a's error fields from an object, whatever its shape:
// RFC 6749's {"error","error_description"}, Slack's {"ok":false,"error"},
// nested {"error":{"code","message","status"}} (Google APIs, Facebook),
// {"errors":[{"errorType","message"}]} (Fitbit) and
// {"errors":[{"resource","field","code"}]} (Strava) lists, HubSpot's and
// Twitch's {"status","message"}, Okta's {"errorCode","errorSummary"},
// RFC 7807's {"title","detail"} and a bare {"message"}. The first code
// found wins; every text is kept (see Answer.Texts).
func collectJSON(a *Answer, m map[string]json.RawMessage) {
	var nested map[string]json.RawMessage
	if raw, ok := m["error"]; ok {
		if s, ok := jsonString(raw); ok {
			a.setError(s, "error")
		} else if json.Unmarshal(raw, &nested) != nil {
			nested = nil
		}
	}
	a.addTexts(m, "", descKeys)
	for _, k := range []string{"error_subtype", "suberror"} { // suberror: Microsoft
		if s := firstString(m, k); s != "" && a.ErrorSubtype == "" {
			a.ErrorSubtype, a.SubtypeFrom = capString(s, maxCodeLen), k
		}
	}
	a.addCodes(m["error_codes"], "error_codes")
	if nested != nil {
		a.collectEntry(nested, "error.", true)
	}
	if !a.HasAccessToken {
		// Beside a token, "status":"active" or "type":"bearer" are no
		// error codes; only an "error" member makes such an answer fail.
		for _, k := range codeKeys {
			if s := firstString(m, k); isCodeLike(s) {
				a.setError(s, k)
			}
		}
		a.addCodes(m["code"], "code")
		a.collectList(m["errors"], "errors")
	}
	a.addTexts(m, "", wordKeys)
}

// collectEntry reads one nested error object or list entry, its members
// named with prefix ("error.", "errors[0]."). An entry without words but
// with a resource, field or code (Strava's
// {"resource":"RefreshToken","field":"refresh_token","code":"invalid"}) is
// read as the phrase "RefreshToken refresh_token invalid". A nested error
// object's own errors list is read too (Google APIs).
func (a *Answer) collectEntry(e map[string]json.RawMessage, prefix string, nested bool) {
	if s := firstString(e, "error"); s != "" {
		a.setError(s, prefix+"error")
	}
	for _, k := range codeKeys {
		if s := firstString(e, k); isCodeLike(s) {
			a.setError(s, prefix+k)
		}
	}
	a.addCodes(e["code"], prefix+"code")
	a.addCodes(e["error_subcode"], prefix+"error_subcode")
	n := len(a.Texts)
	a.addTexts(e, prefix, entryKeys)
	if len(a.Texts) == n && !nested {
		var words []string
		for _, k := range []string{"resource", "field", "code"} {
			if s := firstString(e, k); s != "" {
				words = append(words, s)
			}
		}
		a.addText(strings.TrimSuffix(prefix, "."), strings.Join(words, " "))
	}
	if nested {
		a.collectList(e["errors"], prefix+"errors")
	}
}

// collectList reads the first entries of an errors list named name.
func (a *Answer) collectList(raw json.RawMessage, name string) {
	if raw == nil {
		return
	}
	var list []map[string]json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return
	}
	for i, e := range list[:min(len(list), maxEntries)] {
		a.collectEntry(e, name+"["+strconv.Itoa(i)+"].", false)
	}
}

// setError sets the error code, unless one was found before.
func (a *Answer) setError(s, from string) {
	if a.Error == "" && s != "" {
		a.Error, a.ErrorFrom = capString(s, maxCodeLen), from
	}
}

// addTexts adds the non-empty strings of m under keys, named prefix+key.
func (a *Answer) addTexts(m map[string]json.RawMessage, prefix string, keys []string) {
	for _, k := range keys {
		if s := firstString(m, k); s != "" {
			a.addText(prefix+k, s)
		}
	}
}

// addText adds one text, capped, unless it is empty, already read, or one
// too many. The first text is the answer's ErrorDescription.
func (a *Answer) addText(from, s string) {
	s = capString(s, maxDescriptionLen)
	if s == "" || len(a.Texts) >= maxTexts {
		return
	}
	for _, t := range a.Texts {
		if t.Value == s {
			return
		}
	}
	a.Texts = append(a.Texts, Text{From: from, Value: s})
	if len(a.Texts) == 1 {
		a.ErrorDescription = s
	}
}

// addCodes adds the integers of raw to ErrorCodes (see appendCodes).
func (a *Answer) addCodes(raw json.RawMessage, from string) {
	n := len(a.ErrorCodes)
	a.ErrorCodes = appendCodes(a.ErrorCodes, raw)
	if a.CodesFrom == "" && len(a.ErrorCodes) > n {
		a.CodesFrom = from
	}
}

var codeLike = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.\-]*$`)

// isCodeLike reports whether s reads as an error code rather than a sentence
// or an HTTP status such as "ok".
func isCodeLike(s string) bool {
	return codeLike.MatchString(s) && !strings.EqualFold(s, "ok") && !strings.EqualFold(s, "success")
}

func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return strings.TrimSpace(s), true
}

// firstString returns the first of keys whose value is a non-empty string,
// or a number written as a string.
func firstString(m map[string]json.RawMessage, keys ...string) string {
	for _, k := range keys {
		raw, ok := m[k]
		if !ok {
			continue
		}
		if s, ok := jsonString(raw); ok && s != "" {
			return s
		}
	}
	return ""
}

// appendCodes appends the integers of raw (a number, a numeric string, or an
// array of them) to codes, at most maxErrorCodes in all.
func appendCodes(codes []int, raw json.RawMessage) []int {
	if len(raw) == 0 {
		return codes
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		list = []json.RawMessage{raw}
	}
	for _, r := range list {
		if len(codes) >= maxErrorCodes {
			break
		}
		var n json.Number
		if json.Unmarshal(r, &n) != nil {
			var s string
			if json.Unmarshal(r, &s) != nil {
				continue
			}
			n = json.Number(strings.TrimSpace(s))
		}
		if i, err := strconv.ParseInt(string(n), 10, 32); err == nil {
			codes = append(codes, int(i))
		}
	}
	return codes
}

var aadsts = regexp.MustCompile(`\bAADSTS(\d{4,9})\b`)

// aadstsCodes extracts Microsoft's codes from a description such as
// "AADSTS70008: The provided authorization code or refresh token has
// expired...", for answers pasted without their error_codes array.
func aadstsCodes(desc string) []int {
	var codes []int
	for _, m := range aadsts.FindAllStringSubmatch(desc, maxErrorCodes) {
		if i, err := strconv.Atoi(m[1]); err == nil {
			codes = append(codes, i)
		}
	}
	return codes
}

// capString trims s and cuts it to at most n bytes on a rune boundary.
func capString(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// retryAfter reads the wait an answer asks for. Retry-After wins; the
// rate-limit reset headers count only on a 429 or 503, as GitHub and others
// send them on every answer.
func retryAfter(status int, h http.Header, date, now time.Time) time.Duration {
	ref := now
	if !date.IsZero() {
		ref = date
	}
	var d time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			d = seconds(n)
		} else if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(ref)
		}
	} else if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		for _, k := range []string{"X-RateLimit-Reset", "RateLimit-Reset", "X-Rate-Limit-Reset"} {
			v := strings.TrimSpace(h.Get(k))
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			if n > 1e9 { // Unix seconds (GitHub, Okta), not a delta
				d = time.Unix(n, 0).Sub(ref)
			} else {
				d = seconds(n)
			}
			break
		}
	}
	return min(max(d, 0), maxRetryAfter)
}

func seconds(n int64) time.Duration {
	if n > int64(maxRetryAfter/time.Second) {
		return maxRetryAfter
	}
	return time.Duration(n) * time.Second
}
