package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Access tokens. Each one the sandbox issues names its own expiry and
// carries a MAC under a key of this server
// ("at_<seq>.<expiry, unix ms>.<mac>"), so that a test can ask whether a
// token was issued here and is live (AccessTokenLive) without the server
// keeping a record of the millions a benchmark makes.

// DefaultAccessTokenLifetime is the lifetime (expires_in) of the access
// tokens the sandbox issues unless SetAccessTokenLifetime says otherwise.
const DefaultAccessTokenLifetime = 3599 * time.Second

// SetAccessTokenLifetime sets the lifetime of the access tokens issued from
// now on, in whole seconds (at least one): their expires_in, and the time
// after which AccessTokenLive reports them expired. d <= 0 restores
// DefaultAccessTokenLifetime.
func (s *Server) SetAccessTokenLifetime(d time.Duration) {
	if d <= 0 {
		d = DefaultAccessTokenLifetime
	}
	s.accessLifetime.Store(int64(max(d.Round(time.Second), time.Second)))
}

func (s *Server) accessTokenLifetime() time.Duration {
	if d := s.accessLifetime.Load(); d > 0 {
		return time.Duration(d)
	}
	return DefaultAccessTokenLifetime
}

// AccessTokenExpiry reports when an access token this server issued
// expires; ok is false for any other string (a token of another server, a
// forged or altered one).
func (s *Server) AccessTokenExpiry(tok string) (expires time.Time, ok bool) {
	body, mac, found := cutLast(tok, '.')
	if !found || !strings.HasPrefix(body, "at_") {
		return time.Time{}, false
	}
	_, exp, found := cutLast(body, '.')
	if !found {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var want [accessMACLen]byte
	if !hmac.Equal([]byte(mac), s.accessMAC(want[:0], body)) {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// AccessTokenLive reports whether tok is an access token this server
// issued whose lifetime has not run out.
func (s *Server) AccessTokenLive(tok string) bool {
	exp, ok := s.AccessTokenExpiry(tok)
	return ok && time.Now().Before(exp)
}

// accessMACLen is the MAC's length in hex digits (64 bits).
const accessMACLen = 16

// appendAccessToken appends a new access token, valid for the current
// lifetime from now, to b.
func (s *Server) appendAccessToken(b *bytes.Buffer) {
	start := b.Len()
	b.WriteString("at_")
	var num [20]byte
	b.Write(strconv.AppendUint(num[:0], s.accessSeq.Add(1), 10))
	b.WriteByte('.')
	b.Write(strconv.AppendInt(num[:0], time.Now().Add(s.accessTokenLifetime()).UnixMilli(), 10))
	var mac [accessMACLen]byte
	sum := s.accessMAC(mac[:0], string(b.Bytes()[start:]))
	b.WriteByte('.')
	b.Write(sum)
}

// accessMAC appends the hex MAC of body (accessMACLen digits) to dst.
func (s *Server) accessMAC(dst []byte, body string) []byte {
	s.macOnce.Do(func() {
		key := make([]byte, 32)
		rand.Read(key)
		s.macPool = sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}
	})
	h := s.macPool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(body))
	var sum [sha256.Size]byte
	out := hex.AppendEncode(dst, h.Sum(sum[:0])[:accessMACLen/2])
	s.macPool.Put(h)
	return out
}

// cutLast splits s around the last sep.
func cutLast(s string, sep byte) (before, after string, found bool) {
	if i := strings.LastIndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// Exchanges counts the successful refreshes of token's chain: every answer
// with a new access token to any token of it (Healthy, or Rotate before
// reuse revoked it). 0 for an unknown token.
func (s *Server) Exchanges(token string) int64 {
	s.mu.RLock()
	c, ok := s.tokens[token]
	s.mu.RUnlock()
	if !ok {
		return 0
	}
	return c.exchanges.Load()
}
