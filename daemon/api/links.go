package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Hosted reconnect links: POST /v1/grants/{id}/reconnect_link makes one
// (grants link on the control socket; apps with an app key of scope link
// on daemon.listen). The body is optional.

// LinkRequest is the optional body of POST /v1/grants/{id}/reconnect_link.
type LinkRequest struct {
	// TTL is how long the link works, as a Go duration ("24h"); ""
	// means reconnect.link_ttl.
	TTL string `json:"ttl,omitempty"`
}

// maxLinkRequest bounds the body: it holds one duration.
const maxLinkRequest = 4 << 10

// linkHandler serves POST /v1/grants/{id}/reconnect_link; by says who asks
// (the log names it, the link's record keeps it).
func (s *server) linkHandler(by func(*http.Request) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req LinkRequest
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLinkRequest))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			err = dec.Decode(&req)
		}
		if err != nil {
			writeErr(w, Invalid(fmt.Errorf("read request: %w (want {\"ttl\": \"24h\"} or no body)", err)))
			return
		}
		var ttl time.Duration
		if req.TTL != "" {
			if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
				writeErr(w, Invalid(fmt.Errorf("ttl %q: want a positive Go duration such as \"24h\"", req.TTL)))
				return
			}
		}
		l, err := s.svc.ReconnectLink(r.Context(), r.PathValue("id"), ttl, by(r))
		answer(w, l, err)
	}
}

// ReconnectLink makes a hosted reconnect link for a grant, working for ttl
// (0: reconnect.link_ttl).
func (c *Client) ReconnectLink(ctx context.Context, id string, ttl time.Duration) (ReconnectLink, error) {
	var req LinkRequest
	if ttl < 0 {
		return ReconnectLink{}, errors.New("ttl must not be negative")
	}
	if ttl > 0 {
		req.TTL = ttl.String()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return ReconnectLink{}, err
	}
	var l ReconnectLink
	err = c.do(ctx, http.MethodPost, "/v1/grants/"+url.PathEscape(id)+"/reconnect_link", bytes.NewReader(body), &l)
	return l, err
}
