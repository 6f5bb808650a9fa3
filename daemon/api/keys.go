package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// The control socket's routes for app keys (grantwatch keys): only there,
// never on the TCP listener.

// CreateKeyRequest is the body of POST /v1/keys.
type CreateKeyRequest struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Scopes []string          `json:"scopes,omitempty"`
}

// CreatedKey is the answer of POST /v1/keys: the key record and the key
// itself, which exists nowhere else from then on.
type CreatedKey struct {
	Key
	Secret string `json:"key"`
}

func keyRoutes(mux *http.ServeMux, ka KeyAdmin) {
	mux.Handle("POST /v1/keys", limitBody(maxBody, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req CreateKeyRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, Invalid(errors.New("read request: want {\"name\", \"labels\", \"scopes\"}")))
			return
		}
		scopes, err := ParseScopes(req.Scopes)
		if err != nil {
			writeErr(w, Invalid(err))
			return
		}
		k, secret, err := ka.CreateKey(Key{Name: req.Name, Labels: req.Labels, Scopes: scopes})
		answer(w, CreatedKey{Key: k, Secret: secret}, err)
	})))
	mux.Handle("GET /v1/keys", limitBody(maxBody, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys, err := ka.ListKeys()
		if keys == nil {
			keys = []Key{}
		}
		answer(w, keys, err)
	})))
	mux.Handle("DELETE /v1/keys/{name}", limitBody(maxBody, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := ka.RevokeKey(r.PathValue("name"))
		answer(w, map[string]string{"revoked": r.PathValue("name")}, err)
	})))
}

// CreateKey makes an app key and returns it with its record.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (CreatedKey, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return CreatedKey{}, err
	}
	var out CreatedKey
	err = c.do(ctx, http.MethodPost, "/v1/keys", bytes.NewReader(body), &out)
	return out, err
}

// ListKeys lists the app keys.
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	var out []Key
	err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
	return out, err
}

// RevokeKey deletes the named app key.
func (c *Client) RevokeKey(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(name), nil, nil)
}
