package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Webhook headers of the Standard Webhooks specification 1.0.0
// (standard-webhooks/standard-webhooks spec/standard-webhooks.md), documented
// in README.md "Verifying the webhook signature".
const (
	// HeaderWebhookID is the notification id, the same on every retry.
	HeaderWebhookID = "webhook-id"
	// HeaderWebhookTimestamp is the attempt's time in Unix seconds.
	HeaderWebhookTimestamp = "webhook-timestamp"
	// HeaderWebhookSignature is "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>",
	// one per key of secret_file, separated by spaces.
	HeaderWebhookSignature = "webhook-signature"
)

// The headers of grantwatch's own scheme, still sent beside the standard
// ones for one release so that receivers can move over.
//
// Deprecated: verify HeaderWebhookSignature and dedupe on HeaderWebhookID.
const (
	// HeaderSignature is "t=<unix seconds>,v1=<hex HMAC-SHA256(key, t.body)>",
	// signed with the first key of secret_file.
	HeaderSignature = "X-Grantwatch-Signature"
	// HeaderID is the notification id, as HeaderWebhookID.
	HeaderID = "X-Grantwatch-Id"
)

// webhook POSTs the Notification JSON (DESIGN.md "Interfaces"), signed when
// a secret_file is configured.
type webhook struct {
	name   string
	url    secret.Secret
	keys   []secret.Secret // HMAC keys as bytes, in file order; nil: unsigned
	legacy secret.Secret   // the first line of secret_file as written: the X-Grantwatch-Signature key
	client *http.Client
	red    redactor
	now    func() time.Time
}

// Send implements Sender.
func (w *webhook) Send(ctx context.Context, n Notification) (Delivery, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return Delivery{}, fmt.Errorf("encode notification: %w", err)
	}
	t := w.now()
	h := http.Header{}
	h.Set(HeaderWebhookID, n.ID)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(t.Unix(), 10))
	h.Set(HeaderID, n.ID)
	if len(w.keys) > 0 {
		h.Set(HeaderWebhookSignature, sign(w.keys, n.ID, t, body))
		h.Set(HeaderSignature, signLegacy(w.legacy, t, body))
	}
	return post(ctx, w.client, w.name, w.url.Reveal(), h, body, w.red, w.now)
}

// sign returns the webhook-signature value: "v1,<base64 HMAC-SHA256>" over
// "<id>.<unix seconds>.<body>" for each key, separated by spaces.
func sign(keys []secret.Secret, id string, t time.Time, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		mac := hmac.New(sha256.New, []byte(k.Reveal()))
		fmt.Fprintf(mac, "%s.%d.", id, t.Unix())
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return strings.Join(sigs, " ")
}

// signLegacy returns the X-Grantwatch-Signature value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<unix seconds>." + body)>".
func signLegacy(key secret.Secret, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(key.Reveal()))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// whsecPrefix marks a key in the Standard Webhooks form: whsec_ + base64.
const whsecPrefix = "whsec_"

// Bounds of a whsec_ key's decoded length (the specification: "at least 24
// bytes", 512 bits at most).
const minKeyBytes, maxKeyBytes = 24, 64

// signingKeys reads the content of a secret_file: one key per line (blank
// lines ignored; readSecretFile has refused an empty file), the first also
// the key of the legacy header. A line whsec_<base64> is that base64's
// bytes, as the specification serializes keys; any other line is used as
// its bytes. It returns the keys and the lines as written. Errors give the
// line number, never the key.
func signingKeys(content secret.Secret) (keys []secret.Secret, lines []secret.Secret, err error) {
	for i, line := range strings.Split(content.Reveal(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		lines = append(lines, secret.Secret(line))
		b64, ok := strings.CutPrefix(line, whsecPrefix)
		if !ok {
			keys = append(keys, secret.Secret(line))
			continue
		}
		// A line that claims the specification's form but is not in it is a
		// mistake to report, not a raw key to sign with: receivers decode it.
		k, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: whsec_ key is not base64 (write whsec_ and the standard base64 of %d to %d random bytes): %w",
				i+1, minKeyBytes, maxKeyBytes, err)
		}
		if len(k) < minKeyBytes || len(k) > maxKeyBytes {
			return nil, nil, fmt.Errorf("line %d: whsec_ key is %d bytes, want %d to %d", i+1, len(k), minKeyBytes, maxKeyBytes)
		}
		keys = append(keys, secret.Secret(k))
	}
	return keys, lines, nil
}
