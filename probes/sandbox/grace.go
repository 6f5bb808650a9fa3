package sandbox

import "time"

// SetRotationGrace sets the rotation grace period of Rotate chains: for d
// after a token was exchanged, that previous token may be presented again
// and is answered with a new refresh token instead of reuse detection, as
// long as the token issued for it has not been used yet. A client whose
// answer was lost (a crash between the provider's rotation and the client's
// commit, a dropped connection) can then recover; d <= 0 turns grace off
// (the default: strict reuse detection).
//
// This is the providers' semantics:
//   - Okta, "Grace period for token rotation"
//     (developer.okta.com/docs/guides/refresh-tokens/refresh-token-rotation):
//     after the refresh token is rotated, the previous token remains valid
//     for the configured time so that clients can still get the new token.
//   - Auth0 "Reuse Interval" / "Rotation Overlap Period" (the leeway of the
//     client's refresh_token configuration,
//     auth0.com/docs/secure/tokens/refresh-tokens/configure-refresh-token-rotation):
//     within the leeway breach detection does not apply and a new rotating
//     refresh token is issued; only the previous token can be reused, and
//     exchanging the second-to-last one triggers breach detection.
//
// Like Auth0, a reuse within grace issues a new token that becomes the
// chain's current one (the unused token issued before is abandoned), and it
// is an exchange like any other: the window starts again from it. Once the
// current token is exchanged, the old previous token is the second-to-last
// and presenting it revokes the chain.
func (s *Server) SetRotationGrace(d time.Duration) { s.rotationGrace.Store(int64(d)) }

// inGrace reports whether presented, a token of c that is not its current
// one, may still be exchanged. Call with s.mu held.
func (s *Server) inGrace(c *chain, presented string) bool {
	grace := time.Duration(s.rotationGrace.Load())
	return grace > 0 && c.previous != "" && presented == c.previous &&
		time.Since(c.rotatedAt) <= grace
}

// advance makes next the current token of c after presented was exchanged:
// presented becomes (or, after a reuse within grace, stays) the previous
// token. Call with s.mu held.
func (s *Server) advance(c *chain, presented, next string) {
	if presented != c.current {
		s.graceReused.Add(1)
	}
	c.previous, c.rotatedAt, c.current = presented, time.Now(), next
}
