package probes

import (
	"sort"

	"golang.org/x/oauth2"
)

// Preset is a known provider: its endpoints, how it wants the client
// authenticated, and the rules that read its own wording. A preset whose
// TokenURL is empty is tenant-specific (Okta, Auth0, Keycloak, Ory Hydra):
// the provider entry must give token_url.
type Preset struct {
	Name      string // the preset's name in the config, e.g. "google"
	Title     string // for people, e.g. "Google"
	TokenURL  string
	AuthURL   string
	AuthStyle oauth2.AuthStyle
	// Rules are tried before the generic rules; see Classify.
	Rules []Rule
}

// LookupPreset returns the preset called name.
func LookupPreset(name string) (Preset, bool) {
	p, ok := presets[name]
	return p, ok
}

// PresetNames returns the names of all presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// presets maps a preset name to its provider. Rules quote providers' own
// wording; probes/classify_test.go holds a real answer for each, with where it
// was seen.
var presets = map[string]Preset{
	"google": {
		Name: "google", Title: "Google",
		TokenURL:  "https://oauth2.googleapis.com/token",
		AuthURL:   "https://accounts.google.com/o/oauth2/v2/auth",
		AuthStyle: oauth2.AuthStyleInParams,
		Rules: []Rule{
			// Session control (RAPT): the user must reauthenticate, the grant
			// itself is fine. Google says to tell it from a revoked token by
			// error_subtype (developers.google.com/identity/protocols/oauth2).
			{Name: "google: invalid_rapt", Subtype: "invalid_rapt", Cause: CauseInteractionRequired},
			{Name: "google: rapt_required", Subtype: "rapt_required", Cause: CauseInteractionRequired},
			{Name: "google: invalid_rapt", Pattern: re(`\binvalid_rapt\b`), Cause: CauseInteractionRequired},
			// An admin restricted a scope of the app: its access is withdrawn.
			{Name: "google: admin_policy_enforced", Error: "admin_policy_enforced", Cause: CauseRevoked},
			{Name: "google: admin_policy_enforced", Subtype: "admin_policy_enforced", Cause: CauseRevoked},
			{Name: "google: policy_enforced", Error: "policy_enforced", Cause: CauseRevoked},
			{Name: "google: Account has been deleted", Pattern: re(`account has been deleted`), Cause: CauseRevoked},
			{Name: "google: deleted_client", Error: "deleted_client", Cause: CauseInvalidClient},
			// A service account ("robot") that is disabled or deleted: the
			// app's credentials are gone, which no user can fix by
			// reconnecting (an owner deleted, google-api-ruby-client#720; a
			// maintainer on "account not found", google-cloud-php#3622).
			// Before the generic wording, which would read "Invalid grant"
			// as a verdict on a user's grant.
			{Name: "google: Robot is disabled", Pattern: re(`robot is disabled`), Cause: CauseInvalidClient},
			{Name: "google: service account not found", Pattern: re(`invalid grant: account not found`), Cause: CauseInvalidClient},
			// "Token has been expired or revoked." is the one sentence Google
			// uses for revocation, six months of disuse, a password change,
			// the 100-token limit and the 7-day testing-mode expiry alike
			// (Google's "Refresh token expiration" list); it names no cause,
			// so it stays invalid_grant rather than revoked or expired.
			{Name: "google: Token has been expired or revoked", Pattern: re(`token has been expired or revoked`), Cause: CauseInvalidGrant},
		},
	},
	"microsoft": {
		Name: "microsoft", Title: "Microsoft Entra ID",
		TokenURL:  "https://login.microsoftonline.com/common/oauth2/v2.0/token",
		AuthURL:   "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		Rules: []Rule{
			{Name: "microsoft: AADSTS90033 transient error", Code: 90033, Cause: CauseServerError},
			{Name: "microsoft: AADSTS500133 assertion time range", Code: 500133, Cause: CauseClockSkew},
			{Name: "microsoft: AADSTS700024 client assertion time range", Code: 700024, Cause: CauseClockSkew},
			{Name: "microsoft: AADSTS50173 password changed", Code: 50173, Cause: CausePasswordChanged},
			{Name: "microsoft: AADSTS700082 expired (inactivity)", Code: 700082, Cause: CauseExpired},
			{Name: "microsoft: AADSTS70008 expired", Code: 70008, Cause: CauseExpired},
			{Name: "microsoft: AADSTS700084 SPA token lifetime", Code: 700084, Cause: CauseExpired},
			{Name: "microsoft: AADSTS54005 code already redeemed", Code: 54005, Cause: CauseCodeReused},
			{Name: "microsoft: AADSTS65001 consent", Code: 65001, Cause: CauseInteractionRequired},
			{Name: "microsoft: AADSTS50076 MFA", Code: 50076, Cause: CauseInteractionRequired},
			{Name: "microsoft: AADSTS50079 MFA enrollment", Code: 50079, Cause: CauseInteractionRequired},
			{Name: "microsoft: AADSTS50078 MFA expired", Code: 50078, Cause: CauseInteractionRequired},
			{Name: "microsoft: AADSTS53003 conditional access", Code: 53003, Cause: CauseInteractionRequired},
			// "The refresh token has expired or is invalid due to sign-in
			// frequency checks by conditional access."
			{Name: "microsoft: AADSTS70043 sign-in frequency", Code: 70043, Cause: CauseInteractionRequired},
			{Name: "microsoft: AADSTS50057 user disabled", Code: 50057, Cause: CauseRevoked},
			{Name: "microsoft: AADSTS50053 account locked", Code: 50053, Cause: CauseInteractionRequired},
			{Name: "microsoft: AADSTS50133 session revoked (password)", Code: 50133, Cause: CausePasswordChanged},
			{Name: "microsoft: AADSTS7000215 invalid client secret", Code: 7000215, Cause: CauseInvalidClient},
			{Name: "microsoft: AADSTS7000222 client secret expired", Code: 7000222, Cause: CauseInvalidClient},
			{Name: "microsoft: AADSTS700016 application not found", Code: 700016, Cause: CauseInvalidClient},
		},
	},
	"okta": {
		Name: "okta", Title: "Okta",
		AuthStyle: oauth2.AuthStyleAutoDetect,
		// Okta's "The refresh token is invalid or expired." names no cause:
		// the generic invalid_grant rule applies.
	},
	"auth0": {
		Name: "auth0", Title: "Auth0",
		AuthStyle: oauth2.AuthStyleInParams,
		// Auth0's "Unknown or invalid refresh token." names no cause either.
	},
	"salesforce": {
		Name: "salesforce", Title: "Salesforce",
		TokenURL:  "https://login.salesforce.com/services/oauth2/token",
		AuthURL:   "https://login.salesforce.com/services/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		Rules: []Rule{
			{Name: "salesforce: expired access/refresh token", Pattern: re(`expired access/refresh token|token validity expired`), Cause: CauseExpired},
			{Name: "salesforce: inactive user", Pattern: re(`inactive user|user is inactive`), Cause: CauseRevoked},
			// A wrong consumer key: "client identifier invalid".
			{Name: "salesforce: invalid_client_id", Error: "invalid_client_id", Cause: CauseInvalidClient},
		},
	},
	"slack": {
		Name: "slack", Title: "Slack",
		TokenURL:  "https://slack.com/api/oauth.v2.access",
		AuthURL:   "https://slack.com/oauth/v2/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// Slack answers HTTP 200 {"ok":false,"error":"..."}.
		Rules: []Rule{
			{Name: "slack: invalid_refresh_token", Error: "invalid_refresh_token", Cause: CauseInvalidGrant},
			{Name: "slack: token_revoked", Error: "token_revoked", Cause: CauseRevoked},
			{Name: "slack: account_inactive", Error: "account_inactive", Cause: CauseRevoked},
			{Name: "slack: token_expired", Error: "token_expired", Cause: CauseExpired},
			{Name: "slack: refresh_token_expired", Error: "refresh_token_expired", Cause: CauseExpired},
			{Name: "slack: invalid_client_id", Error: "invalid_client_id", Cause: CauseInvalidClient},
			{Name: "slack: bad_client_secret", Error: "bad_client_secret", Cause: CauseInvalidClient},
			{Name: "slack: ratelimited", Error: "ratelimited", Cause: CauseRateLimited},
		},
	},
	"hubspot": {
		Name: "hubspot", Title: "HubSpot",
		TokenURL:  "https://api.hubapi.com/oauth/v1/token",
		AuthURL:   "https://app.hubspot.com/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// HubSpot answers {"status":"BAD_REFRESH_TOKEN","message":...}.
		Rules: []Rule{
			{Name: "hubspot: BAD_REFRESH_TOKEN", Error: "BAD_REFRESH_TOKEN", Cause: CauseInvalidGrant},
			{Name: "hubspot: BAD_CLIENT_ID", Error: "BAD_CLIENT_ID", Cause: CauseInvalidClient},
			{Name: "hubspot: BAD_CLIENT_SECRET", Error: "BAD_CLIENT_SECRET", Cause: CauseInvalidClient},
		},
	},
	"github": {
		Name: "github", Title: "GitHub",
		TokenURL:  "https://github.com/login/oauth/access_token",
		AuthURL:   "https://github.com/login/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// GitHub answers HTTP 200 with an error, form-encoded unless asked
		// for JSON.
		Rules: []Rule{
			{Name: "github: bad_refresh_token", Error: "bad_refresh_token", Cause: CauseInvalidGrant},
			{Name: "github: bad_verification_code", Error: "bad_verification_code", Cause: CauseInvalidGrant},
			{Name: "github: incorrect_client_credentials", Error: "incorrect_client_credentials", Cause: CauseInvalidClient},
		},
	},
	"atlassian": {
		Name: "atlassian", Title: "Atlassian",
		TokenURL:  "https://auth.atlassian.com/oauth/token",
		AuthURL:   "https://auth.atlassian.com/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		Rules: []Rule{
			// Atlassian reports a dead refresh token as unauthorized_client
			// (HTTP 403): the grant, not the app, is at fault.
			{Name: "atlassian: refresh_token is invalid", Error: "unauthorized_client", Pattern: re(`refresh_token is invalid`), Cause: CauseInvalidGrant},
		},
	},
	"dropbox": {
		Name: "dropbox", Title: "Dropbox",
		TokenURL:  "https://api.dropboxapi.com/oauth2/token",
		AuthURL:   "https://www.dropbox.com/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// "refresh token is invalid or revoked" names no single cause.
	},
	"zoom": {
		Name: "zoom", Title: "Zoom",
		TokenURL:  "https://zoom.us/oauth/token",
		AuthURL:   "https://zoom.us/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		Rules: []Rule{
			// Zoom has answered "Invalid Token!" with invalid_request as
			// well as invalid_grant; either way the refresh token is dead.
			{Name: "zoom: Invalid Token!", Error: "invalid_request", Pattern: re(`invalid token`), Cause: CauseInvalidGrant},
		},
	},
	"xero": {
		Name: "xero", Title: "Xero",
		TokenURL:  "https://identity.xero.com/connect/token",
		AuthURL:   "https://login.xero.com/identity/connect/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
	},
	"intuit": {
		Name: "intuit", Title: "Intuit QuickBooks",
		TokenURL:  "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
		AuthURL:   "https://appcenter.intuit.com/connect/oauth2",
		AuthStyle: oauth2.AuthStyleInHeader,
	},
	"keycloak": {
		Name: "keycloak", Title: "Keycloak",
		AuthStyle: oauth2.AuthStyleAutoDetect,
		Rules: []Rule{
			// TokenManager.validateTokenReuse: a rotated-away token. "Stale
			// token" comes from there too, and from the not-before check
			// of validateToken (tokens issued before an admin's
			// revocation); both need a reconnect, and reuse is the case
			// that needs the rotation looked at.
			{Name: "keycloak: refresh token reuse exceeded", Pattern: re(`maximum allowed refresh token reuse exceeded`), Cause: CauseCodeReused},
			{Name: "keycloak: stale token", Pattern: re(`stale (refresh )?token`), Cause: CauseCodeReused},
			// The SSO session (idle or max) ended, and the token with it.
			{Name: "keycloak: session not active", Pattern: re(`session not active`), Cause: CauseExpired},
			{Name: "keycloak: token is not active", Pattern: re(`token is not active`), Cause: CauseExpired},
		},
	},
	"hydra": {
		Name: "hydra", Title: "Ory Hydra",
		AuthStyle: oauth2.AuthStyleAutoDetect,
		Rules: []Rule{
			// fosite answers a reused (rotated-away) refresh token with
			// token_inactive and revokes the chain; its description says
			// "malformed, expired or otherwise invalid", so this rule must
			// precede the "expired" one.
			{Name: "hydra: token_inactive (reuse)", Error: "token_inactive", Cause: CauseCodeReused},
			{Name: "hydra: already used", Pattern: re(`already (been )?used`), Cause: CauseCodeReused},
			// fosite's hints ("The refresh token expired.", "Token
			// expired.") follow RFC 6749's definition of invalid_grant,
			// which the classifier sets aside (see preambles): the generic
			// wording rules read them.
		},
	},
}
