package probes_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/grantwatch/grantwatch/probes"
)

// TestRefreshRedactsEncodedEcho: a token endpoint (or a gateway before it)
// that quotes the raw request in its error quotes the token and the client
// secret form-encoded, as x/oauth2 sent them (in the body, or in the Basic
// header, which x/oauth2 builds from the query-escaped id and secret). Those
// forms must not reach the Result either.
func TestRefreshRedactsEncodedEcho(t *testing.T) {
	const token, clientSecret = "1//0gTOPSECRET+rt/x=", "cs/TOPSECRET+b41e=0d"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		_, basicSecret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		user, pass, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":"invalid_request","error_description":%q}`,
			"cannot parse request "+string(raw)+" (client "+user+":"+pass+", "+basicSecret+")")
	}))
	defer echo.Close()
	p := newProber(1)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader} {
		ep := probes.Endpoint{TokenURL: echo.URL, ClientID: "id", ClientSecret: clientSecret, AuthStyle: style}
		got := refresh(t, p, ep, token, 5*time.Second)
		out := fmt.Sprintf("%+v", got)
		basic := base64.StdEncoding.EncodeToString([]byte("id:" + url.QueryEscape(clientSecret)))
		for _, s := range []string{token, clientSecret, url.QueryEscape(token), url.QueryEscape(clientSecret), basic} {
			if strings.Contains(out, s) {
				t.Errorf("auth style %v: result leaks %q: %s", style, s, out)
			}
		}
	}
}
