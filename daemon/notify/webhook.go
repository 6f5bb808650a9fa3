package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Webhook headers. The signature scheme is documented in README-notify.md:
// v1 = hex(HMAC-SHA256(key, "<t>." + body)), t in Unix seconds.
const (
	HeaderSignature = "X-Grantwatch-Signature"
	HeaderID        = "X-Grantwatch-Id"
)

// webhook POSTs the Notification JSON (DESIGN.md "Interfaces"), signed when
// a secret_file is configured.
type webhook struct {
	name   string
	url    secret.Secret
	key    secret.Secret // HMAC key; zero: unsigned
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
	h := http.Header{}
	h.Set(HeaderID, n.ID)
	if !w.key.IsZero() {
		h.Set(HeaderSignature, Sign(w.key, w.now(), body))
	}
	return post(ctx, w.client, w.name, w.url.Reveal(), h, body, w.red, w.now)
}

// Sign returns the X-Grantwatch-Signature value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<unix seconds>." + body)>".
func Sign(key secret.Secret, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(key.Reveal()))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
