// Package reconnect runs the OAuth 2.0 authorization-code flow with PKCE on
// a loopback redirect (grantwatch reconnect): the user signs in, the code is
// exchanged, and the new refresh token is returned for the caller to store.
package reconnect

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/secret"
)

// DefaultTimeout is how long Run waits for the browser to
// come back when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Minute

// callbackPath is the path of the loopback redirect URI.
const callbackPath = "/callback"

// Options tune Run.
type Options struct {
	// ShowURL is given the authorization URL to show the user, once the
	// loopback listener is up. It must not block. Required.
	ShowURL func(authURL string)
	// OpenBrowser also opens the URL in a browser, where one exists (macOS,
	// or xdg-open with a graphical session); elsewhere it does nothing.
	OpenBrowser bool
	// LoginHint is sent as login_hint, so that the provider preselects the
	// grant's account (Google and Microsoft honour it). Optional.
	LoginHint string
	// Subject is the grant's subject: a sign-in as an account the
	// provider names otherwise is refused (ErrAccountMismatch). Optional.
	Subject string
	// Timeout bounds the wait for the browser; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Port is the port on 127.0.0.1 the redirect comes back to, so that a
	// tunnel (ssh -L) can be set up before the flow starts; 0 picks a free
	// one.
	Port int
	// HTTPClient exchanges the code; nil means a client like the probes'
	// (no redirects followed).
	HTTPClient *http.Client
}

// Error is the provider's refusal, either on the redirect (RFC 6749
// §4.1.2.1, such as access_denied when the user declined), at the token
// endpoint (§5.2) or at its userinfo endpoint. It never holds a code or a
// token.
type Error struct {
	Provider string
	// Stage is "authorization" (the redirect), "token" (the exchange) or
	// "userinfo" (asking which account signed in, Flow.Exchange).
	Stage string
	// Status is the HTTP status of the token or userinfo endpoint's
	// answer; 0 for the authorization stage.
	Status int
	// Code is the RFC 6749 error code, such as access_denied; for the
	// userinfo stage the status ("HTTP 401") or what went wrong ("no
	// answer").
	Code        string
	Description string // the provider's error_description
	hint        string // what to do about it
	err         error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("provider %s refused the %s request: %s", e.Provider, e.Stage, e.Code)
	if st := fmt.Sprintf("HTTP %d", e.Status); e.Status != 0 && e.Code != st {
		msg += " (" + st + ")"
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.hint != "" {
		msg += "; " + e.hint
	}
	return msg
}

// Unwrap returns the *oauth2.RetrieveError of a token-endpoint refusal.
func (e *Error) Unwrap() error { return e.err }

// Sentinels for callers that branch.
var (
	// ErrStateMismatch: the redirect did not carry this flow's state.
	ErrStateMismatch = errors.New("state mismatch: possible CSRF, start again")
	// ErrReconnectTimeout: the browser did not come back in time.
	ErrReconnectTimeout = errors.New("no answer from the browser in time")
	// ErrNoRefreshToken: the provider granted access but issued no
	// refresh token.
	ErrNoRefreshToken = errors.New("the provider issued no refresh_token")
)

// Run runs the authorization-code flow with PKCE (RFC 7636, S256) for
// one of cfg's providers and returns the new refresh token. The redirect
// comes back to a listener on 127.0.0.1 on a random port (RFC 8252 §7.3),
// or on Options.Port;
// the returned state must match. The token is not stored: give it to
// Client.SetToken, as set-token does.
//
// The code and the tokens are never logged, shown or put in an error.
func Run(ctx context.Context, cfg *config.Config, provider string, opts Options) (secret.Secret, error) {
	p, ok := cfg.Provider(provider)
	if !ok {
		return "", fmt.Errorf("provider %q is not configured (providers: %v)", provider, cfg.ProviderNames())
	}
	if p.AuthURL == "" {
		return "", fmt.Errorf("providers.%s.auth_url: is required for reconnect (the provider's authorization endpoint); set it in the config", p.Name)
	}
	if opts.ShowURL == nil {
		return "", errors.New("reconnect: Options.ShowURL is nil")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Port)))
	if err != nil {
		return "", fmt.Errorf("listen for the redirect on 127.0.0.1 (choose another port with --port, or 0 for any): %w", err)
	}
	flow, err := NewFlow(p, "http://"+ln.Addr().String()+callbackPath, FlowOptions{LoginHint: opts.LoginHint, HTTPClient: opts.HTTPClient})
	if err != nil {
		ln.Close()
		return "", err
	}
	authURL := flow.AuthCodeURL()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cb := &callback{
		flow: flow, done: make(chan struct{}),
		exchange: func(code string) (Result, error) {
			res, err := flow.Exchange(ctx, code)
			if err == nil {
				err = CheckAccount(res.Account, opts.Subject, false)
			}
			return res, err
		},
	}
	srv := &http.Server{Handler: cb, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown below
	defer func() {
		// Let the last page reach the browser, then stop.
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()

	opts.ShowURL(authURL)
	if opts.OpenBrowser {
		openBrowser(authURL)
	}
	select {
	case <-cb.done:
		return cb.token, cb.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", fmt.Errorf("%w: the sign-in did not complete within %s; run reconnect again (with a longer --timeout if needed)", ErrReconnectTimeout, timeout)
		}
		return "", fmt.Errorf("reconnect: %w", ctx.Err())
	}
}

// callback serves the loopback redirect: it checks the state, exchanges the
// code and ends the flow with the first redirect that carries this flow's
// state, or with a state mismatch.
type callback struct {
	flow     *Flow
	exchange func(code string) (Result, error)

	claimed atomic.Bool // a redirect with the right state is being handled
	once    sync.Once
	done    chan struct{} // closed when token or err is set
	token   secret.Secret
	err     error
}

func (c *callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != callbackPath || r.Method != http.MethodGet {
		http.NotFound(w, r) // favicon.ico and the like
		return
	}
	select {
	case <-c.done:
		page(w, http.StatusConflict, "Already handled", "This sign-in was already handled; the result is in your terminal.")
		return
	default:
	}
	q := r.URL.Query()
	if !c.flow.StateMatches(q.Get("state")) {
		page(w, http.StatusBadRequest, "Sign-in refused", "The answer does not belong to this sign-in (state mismatch). Run grantwatch reconnect again.")
		// Once this flow's own redirect is being exchanged its code is
		// spent: a stray request must not end the flow and drop the token.
		if !c.claimed.Load() {
			c.finish("", ErrStateMismatch)
		}
		return
	}
	// One exchange only: a second request (a reload, a prefetch) would
	// present the spent code and could end the flow with its refusal.
	if !c.claimed.CompareAndSwap(false, true) {
		page(w, http.StatusConflict, "Already handled", "This sign-in is already being handled; the result is in your terminal.")
		return
	}
	select {
	case <-c.done: // ended meanwhile: do not spend the code for nothing
		page(w, http.StatusConflict, "Already handled", "This sign-in was already handled; the result is in your terminal.")
		return
	default:
	}
	code, err := c.flow.Redirect(q)
	if err != nil {
		var re *Error
		if errors.As(err, &re) {
			page(w, http.StatusOK, "Sign-in not completed", "The provider answered "+re.Code+". See your terminal for what to do next.")
		} else {
			page(w, http.StatusBadRequest, "Sign-in refused", "The answer carries no authorization code. Run grantwatch reconnect again.")
		}
		c.finish("", err)
		return
	}
	res, err := c.exchange(code)
	switch {
	case errors.Is(err, ErrNoRefreshToken):
		page(w, http.StatusOK, "Sign-in not completed", "The provider issued no refresh token. See your terminal.")
	case errors.Is(err, ErrAccountMismatch):
		page(w, http.StatusOK, "Wrong account", "You signed in with another account than the grant's. See your terminal.")
	case err != nil:
		page(w, http.StatusOK, "Sign-in not completed", "The provider refused to issue a token. See your terminal.")
	default:
		page(w, http.StatusOK, "Connected", "grantwatch has the new grant. You can close this window.")
	}
	c.finish(res.RefreshToken, err)
}

func (c *callback) finish(tok secret.Secret, err error) {
	c.once.Do(func() {
		if err != nil {
			tok = ""
		}
		c.token, c.err = tok, err
		close(c.done)
	})
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>grantwatch: {{.Title}}</title></head>
<body style="font-family:sans-serif;margin:3em"><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// page writes the small page the browser shows at the end of the flow.
func page(w http.ResponseWriter, status int, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The callback URL holds the code: keep it out of any Referer.
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct{ Title, Text string }{title, text})
}

// openBrowser opens u where a browser can be found, and does nothing
// elsewhere (a server over SSH): the URL was shown anyway.
func openBrowser(u string) {
	argv := browserCommand(runtime.GOOS, os.Getenv, exec.LookPath)
	if argv == nil {
		return
	}
	cmd := exec.Command(argv[0], append(argv[1:], u)...)
	if cmd.Start() == nil {
		go cmd.Wait() //nolint:errcheck // reap it; a failure leaves the shown URL
	}
}

// browserCommand is the command that opens a URL on goos, or nil when no
// browser is reachable: on Linux and the BSDs only with xdg-open and a
// graphical session.
func browserCommand(goos string, getenv func(string) string, lookPath func(string) (string, error)) []string {
	switch goos {
	case "darwin":
		return []string{"open"}
	case "windows":
		return nil // start's quoting would break the URL's &s: it is shown instead
	}
	if getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == "" {
		return nil
	}
	p, err := lookPath("xdg-open")
	if err != nil {
		return nil
	}
	return []string{p}
}
