// Package probes runs the checks grantwatch makes — the refresh probe against a
// token endpoint and the NTP clock probe — and classifies their outcome. It
// keeps no state and does no I/O besides the probe itself.
package probes

// Cause is why a probe failed, one of the names in DESIGN.md's cause table.
// The empty Cause means the probe succeeded.
type Cause string

// The causes. Their names are part of grantwatch's interface (JSON, CLI,
// notifications); do not rename them.
const (
	CauseNone                Cause = ""
	CauseRevoked             Cause = "revoked"
	CausePasswordChanged     Cause = "password_changed"
	CauseExpired             Cause = "expired"
	CauseCodeReused          Cause = "code_reused"
	CauseInteractionRequired Cause = "interaction_required"
	CauseInvalidGrant        Cause = "invalid_grant"
	CauseClockSkew           Cause = "clock_skew"
	CauseInvalidClient       Cause = "invalid_client"
	CauseUnauthorizedClient  Cause = "unauthorized_client"
	CauseInvalidScope        Cause = "invalid_scope"
	CauseInvalidRequest      Cause = "invalid_request"
	CauseRateLimited         Cause = "rate_limited"
	CauseServerError         Cause = "server_error"
	CauseNetwork             Cause = "network"
	CauseMalformed           Cause = "malformed"
)

// Action is what has to happen for a failing grant to work again.
type Action string

// The actions.
const (
	ActionNone      Action = ""
	ActionReconnect Action = "reconnect"  // the user gives fresh consent
	ActionSyncClock Action = "sync_clock" // the operator fixes this host's clock
	ActionFixConfig Action = "fix_config" // the operator fixes the provider entry
	ActionRetry     Action = "retry"      // nobody: back off and try again
)

type causeInfo struct {
	action  Action
	summary string
	fix     string
}

// causes is DESIGN.md's cause table. It is the only place that maps a cause
// to its action and its advice.
var causes = map[Cause]causeInfo{
	CauseRevoked: {ActionReconnect,
		"access was revoked (by the user or an admin, the app was removed, or the account was deleted or disabled)",
		"The user (or their admin) withdrew this app's access, or the account no longer exists. Retrying cannot help: ask the user to reconnect the account (fresh consent) and store the new refresh token with `grantwatch grants set-token ID` or `grantwatch reconnect ID`. If many grants of one tenant fail at once, check whether an admin removed the app or changed its policy."},
	CausePasswordChanged: {ActionReconnect,
		"the user's password changed or was reset, which revoked the tokens",
		"Providers revoke refresh tokens when the password is changed or reset. Ask the user to reconnect the account (fresh consent) and store the new refresh token with `grantwatch grants set-token ID` or `grantwatch reconnect ID`."},
	CauseExpired: {ActionReconnect,
		"the refresh token expired (unused too long, or past its maximum lifetime)",
		"The refresh token expired, from disuse (Google ~6 months, Microsoft 90 days) or at its maximum lifetime (for example 7 days for Google apps in testing mode). Ask the user to reconnect, and keep the grant probed on schedule so it is used. If tokens expire after exactly 7 days, publish the OAuth app (Google) or lengthen the token lifetime policy."},
	CauseCodeReused: {ActionReconnect,
		"an authorization code or a rotated refresh token was presented twice",
		"The provider saw this token (or code) a second time and, with refresh-token rotation, revoked the chain. Ask the user to reconnect. Then look for the double use: two processes refreshing the same grant, or a rotated token that was lost in transit or not saved. If the provider offers a rotation grace period (reuse interval), enable it."},
	CauseInteractionRequired: {ActionReconnect,
		"the user must sign in again (MFA, conditional access, re-consent or reauthentication)",
		"The provider requires the user to interact: multi-factor authentication, a conditional-access policy, consent to new scopes, or periodic reauthentication (Google RAPT). Ask the user to reconnect; if it recurs, review the tenant's session and conditional-access policies for this app."},
	CauseInvalidGrant: {ActionReconnect,
		"the provider rejected the refresh token (invalid_grant) without saying why",
		"The provider answered invalid_grant and its description names no cause: the token was revoked, expired or replaced. Ask the user to reconnect. If many grants fail at once, check this host's clock (`grantwatch doctor`) and the provider's status first."},
	CauseClockSkew: {ActionSyncClock,
		"the request fell outside the provider's validity window: this host's clock is off",
		"This host's clock is off, so the provider rejects signed requests as not yet valid or expired. No user action is needed. Sync the clock (chrony: `chronyc makestep`; systemd-timesyncd: `timedatectl set-ntp true`) and check `grantwatch doctor`; held grants are probed again once the clock is good."},
	CauseInvalidClient: {ActionFixConfig,
		"the provider rejected the client credentials (wrong or expired client secret, deleted app)",
		"The provider does not accept this app's client id or secret: the secret expired or was rotated, or the app registration was deleted. Fix client_id / client_secret of this provider in the config and reload (`systemctl reload grantwatch`). Every grant of this provider is held meanwhile; users need not reconnect."},
	CauseUnauthorizedClient: {ActionFixConfig,
		"the app is not allowed to use this grant type",
		"The provider says this client may not use the refresh_token grant (the app registration is disabled, of the wrong type, or not allowed for this tenant). Fix the app registration or the provider entry, then reload. Users need not reconnect."},
	CauseInvalidScope: {ActionFixConfig,
		"a requested scope is not allowed for this app",
		"The provider refused the requested scopes. Remove `scopes` from the provider entry (a refresh needs none) or correct it to scopes the app is granted, then reload. Users need not reconnect."},
	CauseInvalidRequest: {ActionFixConfig,
		"the provider says the request lacked the refresh token: it did not arrive as grantwatch sent it",
		"grantwatch always sends the refresh_token parameter, so a token endpoint that reports it missing did not receive the request as sent: token_url points at another endpoint (a wrong path, tenant or host), or a proxy or gateway in between drops or rewrites the form body. Check this provider's token_url and anything between, then reload (`systemctl reload grantwatch`). Every grant of this provider is held meanwhile; users need not reconnect. If only one grant fails this way, its stored refresh token may be blank or garbled: store a new one with `grantwatch grants set-token ID`."},
	CauseRateLimited: {ActionRetry,
		"the provider is rate limiting requests",
		"The provider asked to slow down (HTTP 429). grantwatch backs off and honours Retry-After; nothing is wrong with the grant. If it persists, lower this provider's `rate` or `concurrency`."},
	CauseServerError: {ActionRetry,
		"the provider's token endpoint failed (5xx or timeout)",
		"The token endpoint answered with a server error or timed out: an outage, not an authorization failure. grantwatch retries with backoff; check the provider's status page if it persists."},
	CauseNetwork: {ActionRetry,
		"the token endpoint could not be reached (DNS, TCP, TLS)",
		"grantwatch could not reach the token endpoint (DNS, connection refused, TLS failure). Check this host's network, DNS, proxy and firewall, and the provider's token_url; `grantwatch doctor` tests each step. The grant itself is fine."},
	CauseMalformed: {ActionRetry,
		"the answer could not be read: not a token response (an HTML page, empty or truncated), or an error no rule knows",
		"The token endpoint answered with something grantwatch cannot read as a verdict: an HTML error page, an empty or truncated body, or an error code and description no rule knows. Usually a proxy or a passing fault; grantwatch retries. If it persists, check token_url and any proxy in between, and run the answer through `grantwatch explain --provider P` to see what was read."},
}

// Known reports whether c is one of the causes of the table (or CauseNone).
func (c Cause) Known() bool {
	_, ok := causes[c]
	return ok || c == CauseNone
}

// Action returns what must happen for a grant failing with c to work again.
func (c Cause) Action() Action { return causes[c].action }

// Summary is one line saying what happened, for logs and notifications.
func (c Cause) Summary() string { return causes[c].summary }

// Fix is one paragraph telling a person what to do.
func (c Cause) Fix() string { return causes[c].fix }

// Retryable reports whether retrying the same token can succeed without anyone
// doing anything.
func (c Cause) Retryable() bool { return c.Action() == ActionRetry }

// Causes lists every cause of the table, in the table's order.
func Causes() []Cause {
	return []Cause{CauseRevoked, CausePasswordChanged, CauseExpired, CauseCodeReused,
		CauseInteractionRequired, CauseInvalidGrant, CauseClockSkew, CauseInvalidClient,
		CauseUnauthorizedClient, CauseInvalidScope, CauseInvalidRequest, CauseRateLimited, CauseServerError,
		CauseNetwork, CauseMalformed}
}
