package notify

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// whsecKey returns a key in the Standard Webhooks form: whsec_ + base64 of
// n bytes.
func whsecKey(n int, fill byte) string {
	return whsecPrefix + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{fill}, n))
}

// The webhook is signed as Standard Webhooks says, checked by the
// specification's own Go library (standard-webhooks/libraries/go), the way
// README.md tells a receiver to: a whsec_ key with NewWebhook, a raw key with
// NewWebhookRaw. With two keys in secret_file (a rotation), a receiver
// holding either verifies.
func TestWebhookSignature(t *testing.T) {
	newKey, oldKey := whsecKey(32, 0xa5), "raw-signing-key-of-the-last-release"
	rc := newReceiver(t, nil)
	now := time.Now()
	c := Config{Name: "hook", Type: KindWebhook, URL: secretOf(rc.URL + "/in"),
		SecretFile: writeFile(t, "webhook.secret", newKey+"\n\n"+oldKey)}
	if _, err := send(t, c, now, revoked(1, "google")); err != nil {
		t.Fatal(err)
	}
	req := rc.requests()[0]
	if got := req.Header.Get(HeaderWebhookID); got != "n-1" {
		t.Errorf("%s = %q, want the notification id n-1", HeaderWebhookID, got)
	}
	if got := req.Header.Get(HeaderWebhookTimestamp); got != strconv.FormatInt(now.Unix(), 10) {
		t.Errorf("%s = %q, want %d", HeaderWebhookTimestamp, got, now.Unix())
	}
	if sigs := strings.Fields(req.Header.Get(HeaderWebhookSignature)); len(sigs) != 2 {
		t.Errorf("%s = %q, want one v1 signature per key", HeaderWebhookSignature, sigs)
	}
	newWH, err := standardwebhooks.NewWebhook(newKey)
	if err != nil {
		t.Fatal(err)
	}
	oldWH, _ := standardwebhooks.NewWebhookRaw([]byte(oldKey))
	otherWH, _ := standardwebhooks.NewWebhook(whsecKey(32, 0x5a))
	for _, tc := range []struct {
		name string
		wh   *standardwebhooks.Webhook
		body []byte
		ok   bool
	}{
		{"new whsec_ key", newWH, req.Body, true},
		{"old raw key", oldWH, req.Body, true},
		{"another key", otherWH, req.Body, false},
		{"changed body", newWH, append(bytes.Clone(req.Body), ' '), false},
	} {
		if err := tc.wh.Verify(tc.body, req.Header); (err == nil) != tc.ok {
			t.Errorf("%s: Verify = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	// The id is signed: a request replayed under another id fails.
	h := req.Header.Clone()
	h.Set(HeaderWebhookID, "n-2")
	if err := newWH.Verify(req.Body, h); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("Verify under another id = %v, want ErrNoMatchingSignature", err)
	}
	if got := req.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	// The body is DESIGN.md's: {"id","receiver","events":[{"type","occurred_at","grant":{…},"summary","fix"}]}.
	var body map[string]any
	if err := json.Unmarshal(req.Body, &body); err != nil {
		t.Fatal(err)
	}
	ev := body["events"].([]any)[0].(map[string]any)
	g := ev["grant"].(map[string]any)
	for _, k := range []string{"id", "provider", "subject", "labels", "state", "cause", "action", "error", "error_description"} {
		if _, ok := g[k]; !ok {
			t.Errorf("grant.%s missing", k)
		}
	}
	for _, k := range []string{"type", "occurred_at", "summary", "fix"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("events[0].%s missing", k)
		}
	}
	if body["id"] != "n-1" || body["receiver"] != "hook" {
		t.Errorf("id/receiver = %v/%v", body["id"], body["receiver"])
	}

	// Unsigned without secret_file; the id still goes, for dedupe.
	c.SecretFile = ""
	if _, err := send(t, c, now, revoked(1, "google")); err != nil {
		t.Fatal(err)
	}
	req = rc.requests()[1]
	for _, k := range []string{HeaderWebhookSignature, HeaderSignature} {
		if got := req.Header.Get(k); got != "" {
			t.Errorf("unsigned webhook sent %s %q", k, got)
		}
	}
	if got := req.Header.Get(HeaderWebhookID); got != "n-1" {
		t.Errorf("unsigned webhook: %s = %q, want n-1", HeaderWebhookID, got)
	}
}

// The test vector of the specification's Go library
// (standard-webhooks/standard-webhooks libraries/go/webhook_test.go,
// TestWebhookSign), read from a secret_file as an operator writes it.
func TestWebhookSignatureVector(t *testing.T) {
	keys, _, err := signingKeys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
	if err != nil {
		t.Fatal(err)
	}
	got := sign(keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("sign = %q, want %q", got, want)
	}
}

func TestSigningKeys(t *testing.T) {
	short := whsecKey(16, 1)
	for _, tc := range []struct {
		name    string
		content string
		keys    []string // as bytes
		err     string
	}{
		{"raw", "  a raw key  ", []string{"a raw key"}, ""},
		{"whsec", whsecKey(24, 'k'), []string{strings.Repeat("k", 24)}, ""},
		{"rotation, blank lines", "\nfirst\r\n\n" + whsecKey(64, 'x') + "\n", []string{"first", strings.Repeat("x", 64)}, ""},
		{"bad base64", "ok\nwhsec_not*base64", nil, "line 2: whsec_ key is not base64"},
		{"too short", short, nil, "line 1: whsec_ key is 16 bytes, want 24 to 64"},
		{"too long", whsecKey(65, 1), nil, "line 1: whsec_ key is 65 bytes, want 24 to 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, lines, err := signingKeys(secret.Secret(tc.content))
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "not*base64") || strings.Contains(err.Error(), short) {
					t.Errorf("the error repeats the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.Reveal())
			}
			if strings.Join(got, "\x00") != strings.Join(tc.keys, "\x00") {
				t.Errorf("keys = %q, want %q", got, tc.keys)
			}
			if len(lines) != len(keys) || strings.Contains(lines[0].Reveal(), "\n") {
				t.Errorf("lines = %q", lines)
			}
		})
	}
	// A bad key stops the receiver at start, naming the file and line.
	p := writeFile(t, "webhook.secret", "whsec_%%%")
	c := Config{Name: "hook", Type: KindWebhook, URL: "https://127.0.0.1/in", SecretFile: p}
	if _, _, err := newSender(c, newHTTPClient(), time.Now); err == nil ||
		!strings.HasPrefix(err.Error(), "notify.hook.secret_file: "+p+": line 1: whsec_ key is not base64") {
		t.Errorf("newSender = %v", err)
	}
}

// verifyLegacy is the receiver side of the deprecated X-Grantwatch-Signature
// as README.md describes it: split "t=…,v1=…", reject t more than 5 minutes
// away, compare hex(HMAC-SHA256(key, t + "." + body)) in constant time.
func verifyLegacy(key, header string, body []byte, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("no timestamp")
	}
	if age := now.Sub(time.Unix(sec, 0)); age > 5*time.Minute || age < -5*time.Minute {
		return errors.New("stale timestamp")
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errors.New("bad signature")
	}
	return nil
}

// For one release the old headers go too, so that a receiver verifying
// X-Grantwatch-Signature keeps working until it moves: signed with the first
// line of secret_file as written (a whsec_ line too: that is what the old
// release used), whatever other keys follow.
func TestWebhookLegacySignature(t *testing.T) {
	for _, first := range []string{"whsec-signing-key-for-test", whsecKey(32, 7)} {
		rc := newReceiver(t, nil)
		now := time.Now()
		c := Config{Name: "hook", Type: KindWebhook, URL: secretOf(rc.URL + "/in"),
			SecretFile: writeFile(t, "webhook.secret", first+"\nthe-next-key")}
		if _, err := send(t, c, now, revoked(1, "google")); err != nil {
			t.Fatal(err)
		}
		req := rc.requests()[0]
		sig := req.Header.Get(HeaderSignature)
		if err := verifyLegacy(first, sig, req.Body, now); err != nil {
			t.Fatalf("documented verification fails: %v (header %q)", err, sig)
		}
		if err := verifyLegacy(first, sig, append(req.Body, ' '), now); err == nil {
			t.Error("a changed body verifies")
		}
		if err := verifyLegacy("other-key", sig, req.Body, now); err == nil {
			t.Error("another key verifies")
		}
		if err := verifyLegacy(first, sig, req.Body, now.Add(6*time.Minute)); err == nil {
			t.Error("a 6-minute-old signature verifies (replay)")
		}
		if got := req.Header.Get(HeaderID); got != "n-1" {
			t.Errorf("%s = %q, want n-1", HeaderID, got)
		}
	}
}

// readmeShell returns the sh block of the README section "Verifying the
// webhook signature", the recipe a receiver copies.
func readmeShell(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "### Verifying the webhook signature\n")
	if !ok {
		t.Fatal(`README.md has no section "Verifying the webhook signature"`)
	}
	sec, _, _ = strings.Cut(sec, "\n### ")
	_, block, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		t.Fatal("the README's signature section has no sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// The shell/openssl recipe of README.md verifies real requests, with a
// whsec_ key and with a raw one, and rejects a stale or foreign signature.
func TestWebhookSignatureShell(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	script := readmeShell(t)
	newKey, oldKey := whsecKey(32, 0x3c), "raw key, with a space"
	rc := newReceiver(t, nil)
	c := Config{Name: "hook", Type: KindWebhook, URL: secretOf(rc.URL + "/in"),
		SecretFile: writeFile(t, "webhook.secret", newKey+"\n"+oldKey)}
	for i, now := range []time.Time{time.Now(), time.Now().Add(-10 * time.Minute)} {
		if _, err := send(t, c, now, revoked(1, "google")); err != nil {
			t.Fatal(err)
		}
		req := rc.requests()[i]
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "body.json"), req.Body, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			key, want string
		}{
			{newKey, "valid"},
			{oldKey, "valid"},
			{whsecKey(32, 0x3d), "INVALID"},
		} {
			if i == 1 {
				tc.want = "INVALID" // ten minutes old
			}
			cmd := exec.Command("/bin/sh", "-c", script)
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KEY=" + tc.key,
				"WH_ID=" + req.Header.Get(HeaderWebhookID),
				"WH_TS=" + req.Header.Get(HeaderWebhookTimestamp),
				"WH_SIG=" + req.Header.Get(HeaderWebhookSignature)}
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != tc.want {
				t.Errorf("request %d, key %.12s…: %q, %v; want %s", i, tc.key, out, err, tc.want)
			}
		}
	}
}

// A webhook that answers 500 echoing its request must not get a signing key
// into the error, for either form of key.
func TestWebhookErrorHidesKeys(t *testing.T) {
	key := whsecKey(32, 0x42)
	rc := newReceiver(t, func(int, *http.Request, []byte) (int, string) {
		return http.StatusInternalServerError, "your key " + key + " or " + strings.TrimPrefix(key, whsecPrefix) + " is wrong"
	})
	c := Config{Name: "hook", Type: KindWebhook, URL: secretOf(rc.URL + "/in"), SecretFile: writeFile(t, "webhook.secret", key)}
	d, err := send(t, c, time.Now(), revoked(1, "google"))
	if err == nil {
		t.Fatal("want the 500 as an error")
	}
	b64 := strings.TrimPrefix(key, whsecPrefix)
	for what, s := range map[string]string{"answer": d.Answer, "error": err.Error()} {
		if strings.Contains(s, b64[:12]) {
			t.Errorf("%s holds the signing key: %q", what, s)
		}
	}
}

// FuzzWebhookBody: whatever the events hold, the body is JSON that decodes
// to the Notification and encodes back to the same bytes, signed so that the
// specification's library verifies it; the URL's token and the signing key
// are in neither body nor headers, nor in the error of a receiver that
// echoes the request.
func FuzzWebhookBody(f *testing.F) {
	rc := newEchoReceiver(f)
	client := newHTTPClient()
	keyFile := filepath.Join(f.TempDir(), "webhook.secret")
	fuzzNotifications(f, func(t *testing.T, n Notification) {
		token := fuzzSecret()
		b64 := base64.StdEncoding.EncodeToString([]byte(fuzzSecret()))
		if err := os.WriteFile(keyFile, []byte(whsecPrefix+b64+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := Config{Name: "hook", Type: KindWebhook, URL: secretOf(rc.URL + "/in/" + token), SecretFile: keyFile}
		req := sendEchoed(t, rc, client, c, n, token, b64)[0]
		checkNotificationJSON(t, req.Body, n)
		wh, err := standardwebhooks.NewWebhook(whsecPrefix + b64)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(req.Body, req.Header); err != nil {
			t.Errorf("Verify = %v", err)
		}
		for _, s := range append([]string{string(req.Body)}, headerValues(req.Header)...) {
			if strings.Contains(s, token) || strings.Contains(s, b64) {
				t.Errorf("a secret went out in %q", s)
			}
		}
	})
}

func headerValues(h http.Header) []string {
	var out []string
	for _, vs := range h {
		out = append(out, vs...)
	}
	return out
}
