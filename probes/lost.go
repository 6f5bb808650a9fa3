package probes

import "net/http"

// LostStatus reports whether an answer of this HTTP status counts as lost
// (Result.Lost): a gateway's 502 or 504 comes from between the client and
// the token endpoint, which may have handled the request, and rotated the
// token, all the same.
func LostStatus(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusGatewayTimeout
}
