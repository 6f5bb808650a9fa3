package probes

import (
	"sort"
	"time"

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

	// AuthParams are the authorization request's parameters the provider
	// needs before it issues a refresh token (Google access_type=offline
	// and prompt=consent). Both reconnect flows send them: the loopback one
	// (grantwatch reconnect) and the hosted link.
	AuthParams map[string]string
	// OfflineScope is the scope that asks for a refresh token
	// (offline_access, in OpenID Connect Core §11); the flows add it to the
	// provider entry's scopes when they lack it. Empty: none is needed.
	OfflineScope string

	// The lifetimes below are what the provider documents for a refresh
	// token; each value's comment names the page. Zero means none, unknown,
	// or set per tenant or app (Auth0, Keycloak, Ory Hydra): nothing to
	// forecast from.

	// IdleLifetime is how long a refresh token may go unused before it dies
	// (Microsoft 90 days, Box 60 days). A successful refresh is a use and
	// starts the window again, so a grant probed more often than this never
	// dies of disuse.
	IdleLifetime time.Duration
	// MaxLifetime is the most a grant lives from the user's consent however
	// often it is refreshed (LinkedIn 365 days, Intuit 5 years); after it the
	// user must consent again.
	MaxLifetime time.Duration
	// RotationGrace is how long a rotated-away refresh token is still
	// accepted after the refresh that replaced it (Okta 30 s by default,
	// Xero 30 minutes): the time a lost rotation can still be retried with
	// the old token. Zero means none documented (where the provider rotates,
	// the old token dies at once) or a per-tenant setting.
	RotationGrace time.Duration

	// UserInfo is the endpoint that says whose an access token is, for a
	// provider whose token answer carries no id_token (no OpenID Connect):
	// the reconnect flows ask it which account signed in. Zero: none is
	// documented, or the provider sends an id_token.
	UserInfo UserInfo
}

// UserInfo is an endpoint that names the account an access token belongs
// to (GitHub GET /user, Atlassian GET /me), and the members of its JSON
// answer that do. Each list is tried in order; the first member present
// with a non-empty string or number wins.
type UserInfo struct {
	URL string
	// Scope is what the endpoint needs beyond the entry's scopes (Atlassian
	// read:me); the flows add it to the authorization request. Empty: none.
	Scope string
	// ID names the provider's stable id of the account, Email its email
	// address, Username its user name. Only members the provider vouches
	// for belong here: an unverified address may be anyone's. An
	// email_verified member that is false drops the email whatever the
	// preset (OpenID Connect Core §5.3.2).
	ID, Email, Username []string
}

// GenericUserInfo is the member names read from a configured userinfo_url
// whose preset has no UserInfo: OpenID Connect's (sub, email,
// preferred_username) and the common id, account_id and login.
var GenericUserInfo = UserInfo{
	ID:       []string{"sub", "id", "account_id"},
	Email:    []string{"email"},
	Username: []string{"preferred_username", "login"},
}

// day is a calendar day, for the lifetimes above.
const day = 24 * time.Hour

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
		// A refresh token only for offline access, and again only when the
		// consent screen is shown (developers.google.com/identity/protocols/oauth2/web-server,
		// "Refresh access tokens (offline access)").
		AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
		// "six months" unused (developers.google.com/identity/protocols/oauth2,
		// "Refresh token expiration"; as summarised in
		// docs.gitguardian.com/.../google_oauth2_refresh_token): 180 days errs early.
		// The 7-day expiry of apps in testing mode is not counted here.
		IdleLifetime: 180 * day,
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
		// learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow:
		// a refresh token only with the offline_access scope.
		OfflineScope: "offline_access",
		// 90 days for all but single-page apps (24 hours); each refresh
		// returns a new token and old ones are not revoked, so there is no
		// grace to speak of (learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens).
		IdleLifetime: 90 * day,
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
		// developer.okta.com/docs/guides/refresh-tokens/: offline_access.
		OfflineScope: "offline_access",
		// The rotation leeway defaults to 30 s (okta/okta-sdk-dotnet
		// docs/OpenIdConnectApplicationSettingsRefreshToken.md; developer.okta.com/docs/guides/refresh-tokens/refresh-token-rotation/).
		// Lifetimes depend on the authorization server: the org server's is a
		// fixed 90 days, a custom server's is its policy
		// (support.okta.com/help/s/article/refresh-token-expiration-behavior).
		RotationGrace: 30 * time.Second,
		// Okta's "The refresh token is invalid or expired." names no cause:
		// the generic invalid_grant rule applies.
	},
	"auth0": {
		Name: "auth0", Title: "Auth0",
		AuthStyle: oauth2.AuthStyleInParams,
		// auth0.com/docs/secure/tokens/refresh-tokens/get-refresh-tokens.
		OfflineScope: "offline_access",
		// Auth0's "Unknown or invalid refresh token." names no cause either.
	},
	"salesforce": {
		Name: "salesforce", Title: "Salesforce",
		TokenURL:  "https://login.salesforce.com/services/oauth2/token",
		AuthURL:   "https://login.salesforce.com/services/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// The refresh_token scope (developer.salesforce.com, "OAuth Tokens
		// and Scopes"; github.com/cangencer/salesforce-oauth2 README).
		OfflineScope: "refresh_token",
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
		// GitHub App user tokens: each refresh returns a refresh token that
		// expires in 15897600 s (six months) and kills the one used
		// (docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens).
		IdleLifetime: 15897600 * time.Second,
		// GET https://api.github.com/user answers {"login": "octocat", "id":
		// 1, ...} for the token's user (docs.github.com/en/rest/users/users,
		// "Get the authenticated user"). Its email is the public one the
		// user chose, or null: not read, since nothing there says it was
		// verified (omniauth/omniauth-github#36 on unverified addresses).
		UserInfo: UserInfo{URL: "https://api.github.com/user", ID: []string{"id"}, Username: []string{"login"}},
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
		// developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/: the
		// authorization URL carries audience=api.atlassian.com and
		// prompt=consent, and offline_access asks for a refresh token.
		AuthParams:   map[string]string{"audience": "api.atlassian.com", "prompt": "consent"},
		OfflineScope: "offline_access",
		// Rotating refresh tokens: 90 days of inactivity, 365 days absolute,
		// a 10-minute leeway for reuse (community.developer.atlassian.com/t/updated-31-january-2022-action-required-deprecating-persistent-refresh-tokens/54172).
		IdleLifetime:  90 * day,
		MaxLifetime:   365 * day,
		RotationGrace: 10 * time.Minute,
		// GET https://api.atlassian.com/me with the read:me scope answers
		// {"account_id": "112233aa-...", "email": "mia@example.com",
		// "nickname": "mkrystof", ...} (developer.atlassian.com/cloud/oauth/getting-started/faq,
		// "User Identity API"). The nickname is not unique: not read.
		UserInfo: UserInfo{URL: "https://api.atlassian.com/me", Scope: "read:me", ID: []string{"account_id"}, Email: []string{"email"}},
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
		// dropbox.tech/developers/using-oauth-2-0-with-offline-access.
		AuthParams: map[string]string{"token_access_type": "offline"},
		// "refresh token is invalid or revoked" names no single cause.
	},
	"zoom": {
		Name: "zoom", Title: "Zoom",
		TokenURL:  "https://zoom.us/oauth/token",
		AuthURL:   "https://zoom.us/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// GET https://api.zoom.us/v2/users/me is the token's user
		// (github.com/zoom/api/issues/64), with "id" and "email"
		// (developers.zoom.us/docs/api/users/#tag/users/GET/users/{userId},
		// as described in pipedream.com/apps/zoom/actions/get-current-user).
		// Zoom takes no scopes in the authorization request: the app needs
		// user:read in its Marketplace settings.
		UserInfo: UserInfo{URL: "https://api.zoom.us/v2/users/me", ID: []string{"id"}, Email: []string{"email"}},
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
		// developer.xero.com/documentation/guides/oauth2/auth-flow: the
		// offline_access scope.
		OfflineScope: "offline_access",
		// "refresh token itself has a 60 days lifetime", from Xero's SDK
		// maintainer in github.com/XeroAPI/Xero-NetStandard/issues/257; an old
		// token may be retried for 30 minutes (Xero's official reply in
		// community.xero.com/developer/discussion/105714701).
		IdleLifetime:  60 * day,
		RotationGrace: 30 * time.Minute,
	},
	"intuit": {
		Name: "intuit", Title: "Intuit QuickBooks",
		TokenURL:  "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
		AuthURL:   "https://appcenter.intuit.com/connect/oauth2",
		AuthStyle: oauth2.AuthStyleInHeader,
		// Valid while used at least every 100 days, and at most five years
		// (github.com/intuit/QuickBooks-V3-Java-SDK/releases/tag/v6.5.4).
		IdleLifetime: 100 * day,
		MaxLifetime:  5 * 365 * day,
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
		// Ory Hydra issues a refresh token for offline_access (or offline).
		OfflineScope: "offline_access",
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

	// --- presets added for issue 14 ---

	"box": {
		Name: "box", Title: "Box",
		TokenURL:  "https://api.box.com/oauth2/token",
		AuthURL:   "https://account.box.com/api/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// A refresh token is good for one use within 60 days
		// (developer.box.com/guides/authentication/tokens/refresh).
		IdleLifetime: 60 * day,
		// GET https://api.box.com/2.0/users/me is the user who authorized the
		// app: {"type": "user", "id": "33333", "login": "user@example.com", ...}
		// (developer.box.com/reference/get-users-me/); login is the address
		// the user signs in with.
		UserInfo: UserInfo{URL: "https://api.box.com/2.0/users/me", ID: []string{"id"}, Email: []string{"login"}},
		Rules: []Rule{
			{Name: "box: Refresh token has expired", Error: "invalid_grant", Pattern: re(`refresh token has expired`), Cause: CauseExpired},
		},
	},
	"strava": {
		Name: "strava", Title: "Strava",
		TokenURL:  "https://www.strava.com/oauth/token",
		AuthURL:   "https://www.strava.com/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// Strava answers {"message":"Bad Request","errors":[{"resource":
		// "RefreshToken","field":"refresh_token","code":"invalid"}]}: the
		// resource says what is wrong, the code only that it is.
		Rules: []Rule{
			{Name: "strava: RefreshToken invalid", StatusClass: 4, Pattern: re(`\brefresh_?token\b`), Cause: CauseInvalidGrant},
			{Name: "strava: Application client_id invalid", StatusClass: 4, Pattern: re(`\bapplication\b|\bclient_(id|secret)\b`), Cause: CauseInvalidClient},
		},
	},
	"fitbit": {
		Name: "fitbit", Title: "Fitbit",
		TokenURL:  "https://api.fitbit.com/oauth2/token",
		AuthURL:   "https://www.fitbit.com/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// Fitbit answers {"errors":[{"errorType":"invalid_grant","message":
		// "Refresh token invalid: ..."}],"success":false}.
		Rules: []Rule{
			{Name: "fitbit: Refresh token invalid", StatusClass: 4, Pattern: re(`refresh token invalid`), Cause: CauseInvalidGrant},
		},
	},
	"twitch": {
		Name: "twitch", Title: "Twitch",
		TokenURL:  "https://id.twitch.tv/oauth2/token",
		AuthURL:   "https://id.twitch.tv/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// Twitch answers {"status":400,"message":"Invalid refresh token"}:
		// no error field, the message is all it says.
		Rules: []Rule{
			{Name: "twitch: Invalid refresh token", StatusClass: 4, Pattern: re(`invalid (refresh token|grant)`), Cause: CauseInvalidGrant},
		},
	},
	"discord": {
		Name: "discord", Title: "Discord",
		TokenURL:  "https://discord.com/api/oauth2/token",
		AuthURL:   "https://discord.com/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// Each refresh token is good for one use.
		Rules: []Rule{ruleInvalidRefreshTokenParam},
	},
	"gitlab": {
		Name: "gitlab", Title: "GitLab",
		TokenURL:  "https://gitlab.com/oauth/token",
		AuthURL:   "https://gitlab.com/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// Doorkeeper's invalid_grant sentence lists every cause at once;
		// the generic rule reads it as invalid_grant. Self-managed GitLab
		// needs its own token_url.
	},
	"spotify": {
		Name: "spotify", Title: "Spotify",
		TokenURL:  "https://accounts.spotify.com/api/token",
		AuthURL:   "https://accounts.spotify.com/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// Six months from the user's authorization; refreshing does not
		// extend it (developer.spotify.com/blog/2026-06-18-refresh-token-expiration).
		// 180 days errs early.
		MaxLifetime: 180 * day,
		// GET https://api.spotify.com/v1/me answers {"id": ..., "email": ...,
		// "display_name": ...} (developer.spotify.com/documentation/web-api/reference/get-current-users-profile,
		// as mirrored in apidog.com/apidoc/docs-site/347255/api-3543073). The
		// email "is unverified; there is no proof that it actually belongs to
		// the user" (Spotify's field doc, hexdocs.pm/spotify_web_api/Spotify.Users.html):
		// only the id is read.
		UserInfo: UserInfo{URL: "https://api.spotify.com/v1/me", ID: []string{"id"}},
		Rules: []Rule{
			{Name: "spotify: Refresh token revoked", Error: "invalid_grant", Pattern: re(`refresh token revoked`), Cause: CauseRevoked},
		},
	},
	"zoho": {
		Name: "zoho", Title: "Zoho",
		// The US data centre; accounts.zoho.eu, .in, .com.au, ... need
		// their own token_url.
		TokenURL:  "https://accounts.zoho.com/oauth/v2/token",
		AuthURL:   "https://accounts.zoho.com/oauth/v2/auth",
		AuthStyle: oauth2.AuthStyleInParams,
		// zoho.com/accounts/protocol/oauth/web-apps/authorization.html: "To
		// receive another refresh token, include access_type=offline and
		// prompt=consent".
		AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
		// Zoho answers HTTP 200 {"error":"invalid_code"} to a dead refresh
		// token as to a dead grant code.
		Rules: []Rule{
			{Name: "zoho: invalid_code", Error: "invalid_code", Cause: CauseInvalidGrant},
		},
	},
	"amazon": {
		Name: "amazon", Title: "Login with Amazon",
		TokenURL:  "https://api.amazon.com/auth/o2/token",
		AuthURL:   "https://www.amazon.com/ap/oa",
		AuthStyle: oauth2.AuthStyleInParams,
		// "The request has an invalid grant parameter : refresh_token" names
		// no cause ("User may have revoked ..." only guesses).
	},
	"apple": {
		Name: "apple", Title: "Sign in with Apple",
		TokenURL:  "https://appleid.apple.com/auth/token",
		AuthURL:   "https://appleid.apple.com/auth/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// The client secret is a JWT the app signs; "The code has expired or
		// has been revoked." names no single cause.
	},
	"cognito": {
		Name: "cognito", Title: "Amazon Cognito",
		AuthStyle: oauth2.AuthStyleInHeader,
		// Each user pool has its own domain: token_url is
		// https://<domain>.auth.<region>.amazoncognito.com/oauth2/token.
		// 30 days from sign-in unless the app client sets 60 minutes to 10
		// years (docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-refresh-token.html);
		// the rotation grace is the app client's RetryGracePeriodSeconds (0–60 s).
		MaxLifetime: 30 * day,
	},
	"bitbucket": {
		Name: "bitbucket", Title: "Bitbucket Cloud",
		TokenURL:  "https://bitbucket.org/site/oauth2/access_token",
		AuthURL:   "https://bitbucket.org/site/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// GET https://api.bitbucket.org/2.0/user, scope account, is the
		// logged-in user: {"type", "display_name", "uuid", ...}
		// (developer.atlassian.com/cloud/bitbucket/rest/api-group-users/).
		// Emails are another endpoint, "both confirmed and unconfirmed".
		UserInfo: UserInfo{URL: "https://api.bitbucket.org/2.0/user", Scope: "account", ID: []string{"uuid"}},
		Rules:    []Rule{ruleInvalidRefreshTokenParam},
	},
	"pipedrive": {
		Name: "pipedrive", Title: "Pipedrive",
		TokenURL:  "https://oauth.pipedrive.com/oauth/token",
		AuthURL:   "https://oauth.pipedrive.com/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// {"success":false,"message":"Invalid grant: refresh token is
		// invalid","error":"invalid_grant"}: the generic rule applies.
	},
	"docusign": {
		Name: "docusign", Title: "DocuSign",
		// Production; the developer sandbox is account-d.docusign.com.
		TokenURL:  "https://account.docusign.com/oauth/token",
		AuthURL:   "https://account.docusign.com/oauth/auth",
		AuthStyle: oauth2.AuthStyleInHeader,
		Rules: []Rule{
			// invalid_grant "expired_client_token" came of a wrong client
			// secret, and went away when the real one was configured.
			{Name: "docusign: expired_client_token", Error: "invalid_grant", Pattern: re(`\bexpired_client_token\b`), Cause: CauseInvalidClient},
		},
	},
	"linkedin": {
		Name: "linkedin", Title: "LinkedIn",
		TokenURL:  "https://www.linkedin.com/oauth/v2/accessToken",
		AuthURL:   "https://www.linkedin.com/oauth/v2/authorization",
		AuthStyle: oauth2.AuthStyleInParams,
		// Programmatic refresh tokens (approved partners only) live 365 days
		// from consent; refreshing does not extend them
		// (learn.microsoft.com/en-us/linkedin/shared/authentication/programmatic-refresh-tokens).
		MaxLifetime: 365 * day,
	},
	"x": {
		Name: "x", Title: "X (Twitter)",
		TokenURL:  "https://api.x.com/2/oauth2/token",
		AuthURL:   "https://x.com/i/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		Rules: []Rule{
			// X reports a dead grant as invalid_request "Value passed for the
			// token was invalid." (the refresh token) or "... for the
			// authorization code ...".
			{Name: "x: value passed was invalid", Error: "invalid_request", Pattern: re(`value passed for the (token|authorization code) was invalid`), Cause: CauseInvalidGrant},
		},
	},
	"reddit": {
		Name: "reddit", Title: "Reddit",
		TokenURL:  "https://www.reddit.com/api/v1/access_token",
		AuthURL:   "https://www.reddit.com/api/v1/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// Reddit answers {"error": 401, "message": "Unauthorized"}: a number,
		// not a code; the 401 says the client credentials are wrong.
	},
	"ebay": {
		Name: "ebay", Title: "eBay",
		TokenURL:  "https://api.ebay.com/identity/v1/oauth2/token",
		AuthURL:   "https://auth.ebay.com/oauth2/authorize",
		AuthStyle: oauth2.AuthStyleInHeader,
		// "the provided authorization refresh token is invalid or was issued
		// to another client" names no cause.
	},
	"asana": {
		Name: "asana", Title: "Asana",
		TokenURL:  "https://app.asana.com/-/oauth_token",
		AuthURL:   "https://app.asana.com/-/oauth_authorize",
		AuthStyle: oauth2.AuthStyleInParams,
	},
	"yahoo": {
		Name: "yahoo", Title: "Yahoo",
		TokenURL:  "https://api.login.yahoo.com/oauth2/get_token",
		AuthURL:   "https://api.login.yahoo.com/oauth2/request_auth",
		AuthStyle: oauth2.AuthStyleInHeader,
		Rules: []Rule{
			{Name: "yahoo: INVALID_REFRESH_TOKEN", Error: "INVALID_REFRESH_TOKEN", Cause: CauseInvalidGrant},
		},
	},
	"mercadolibre": {
		Name: "mercadolibre", Title: "Mercado Libre",
		TokenURL: "https://api.mercadolibre.com/oauth/token",
		// The Argentine site; each country has its own auth.mercadolibre.*.
		AuthURL:   "https://auth.mercadolibre.com.ar/authorization",
		AuthStyle: oauth2.AuthStyleInParams,
		Rules:     []Rule{ruleMercadoGrant},
	},
	"mercadopago": {
		Name: "mercadopago", Title: "Mercado Pago",
		TokenURL:  "https://api.mercadopago.com/oauth/token",
		AuthURL:   "https://auth.mercadopago.com/authorization",
		AuthStyle: oauth2.AuthStyleInParams,
		Rules:     []Rule{ruleMercadoGrant},
	},
	"etsy": {
		Name: "etsy", Title: "Etsy",
		TokenURL:  "https://api.etsy.com/v3/public/oauth/token",
		AuthURL:   "https://www.etsy.com/oauth/connect",
		AuthStyle: oauth2.AuthStyleInParams,
		// Each refresh returns a refresh token good for 90 days (Etsy's
		// authentication docs, developers.etsy.com/documentation/essentials/authentication,
		// as quoted in github.com/etsy/open-api/issues/116).
		IdleLifetime: 90 * day,
		Rules: []Rule{
			// A password change revokes every token of the user
			// (github.com/etsy/open-api/issues/519).
			{Name: "etsy: refresh_token is revoked", Error: "invalid_grant", Pattern: re(`refresh_token is revoked`), Cause: CauseRevoked},
		},
	},
	"miro": {
		Name: "miro", Title: "Miro",
		TokenURL:  "https://api.miro.com/v1/oauth/token",
		AuthURL:   "https://miro.com/oauth/authorize",
		AuthStyle: oauth2.AuthStyleInParams,
		// With expiring tokens on, a refresh token "remains valid [for] 60
		// days" (developers.miro.com/docs/getting-started-with-oauth, as
		// quoted in github.com/miroapp/miro-ai/issues/59); each refresh
		// returns a new one.
		IdleLifetime: 60 * day,
	},
	"wso2": {
		Name: "wso2", Title: "WSO2 Identity Server",
		// Self-hosted: token_url is https://<host>/oauth2/token.
		AuthStyle: oauth2.AuthStyleInHeader,
		// "Persisted access token data not found" is WSO2's invalid_grant for
		// an unknown refresh token; the generic rule applies.
	},
}

// ruleInvalidRefreshTokenParam reads invalid_request `Invalid "refresh_token"
// in request.` (Authlib, Discord) and `Invalid refresh_token` (oauthlib,
// Bitbucket): a refresh token the server does not know, reported as a bad
// parameter. Without a preset invalid_request stays malformed, since it
// usually means our request was off.
var ruleInvalidRefreshTokenParam = Rule{
	Name:    "invalid_request: invalid refresh_token",
	Error:   "invalid_request",
	Pattern: re(`invalid "?refresh_token"?`),
	Cause:   CauseInvalidGrant,
}

// ruleMercadoGrant reads Mercado Libre's and Mercado Pago's invalid_grant
// "Your authorization code or refresh token may be expired or it was already
// used": it names two causes and commits to neither, so it is invalid_grant,
// not the code_reused the generic "already used" wording rule would read.
var ruleMercadoGrant = Rule{
	Name:    "mercado: may be expired or it was already used",
	Error:   "invalid_grant",
	Pattern: re(`may be expired or it was already used`),
	Cause:   CauseInvalidGrant,
}
