package web_test

// Browser tests: Debian's chromium, headless, driven by chromedp, against
// a daemon whose daemon.listen serves the pages and the sandbox's consent
// page. Every page is shot at 375 px wide (a phone) and must fit it; the
// screenshots go to $GRANTWATCH_SCREENSHOTS when set (CI keeps them as
// artifacts; README's docs/*.png were made this way), else to the test's
// temporary directory. .ci/run installs chromium and sets
// GRANTWATCH_BROWSER_TESTS=required, so that there a missing browser
// fails instead of skipping.

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/store"
)

// phoneWidth is the width every page must fit.
const phoneWidth = 375

var (
	browserOnce   sync.Once
	browserCtx    context.Context // the browser, shared by the tests
	browserStop   func()
	browserErr    error
	browserTmpDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if browserStop != nil {
		browserStop()
	}
	if browserTmpDir != "" {
		os.RemoveAll(browserTmpDir)
	}
	os.Exit(code)
}

// startBrowser starts chromium once for the package.
func startBrowser(path string) {
	browserTmpDir, browserErr = os.MkdirTemp("", "grantwatch-chromium-")
	if browserErr != nil {
		return
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(browserTmpDir),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	browserStop = func() { cancel(); cancelAlloc() }
	browserCtx = ctx
	browserErr = chromedp.Do(ctx) // starts the browser
}

// tab is a new tab at phone size in a browser context of its own (its own
// cookies), closed when the test ends.
func tab(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("GRANTWATCH_BROWSER_TESTS") == "required" {
			t.Fatal("chromium is not installed, and GRANTWATCH_BROWSER_TESTS=required (apt-get install chromium)")
		}
		t.Skip("chromium is not installed: apt-get install chromium to run the browser tests (.ci/run does)")
	}
	browserOnce.Do(func() { startBrowser(path) })
	if browserErr != nil {
		t.Fatalf("start chromium: %v", browserErr)
	}
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancelT)
	do(t, ctx, chromedp.EmulateViewport(phoneWidth, 800, chromedp.EmulatePortrait, chromedp.EmulateMobile))
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// text is the visible text of the page's main element.
func text(t *testing.T, ctx context.Context) string {
	t.Helper()
	return run(t, ctx, chromedp.Text(chromedp.CSS("main"), chromedp.NodeVisible))
}

// shot takes a full-page screenshot named name, checks that the page fits
// the phone's width (no sideways scrolling) and keeps the PNG.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if w := run(t, ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > phoneWidth {
		t.Errorf("%s: the page is %d px wide, more than the phone's %d", name, w, phoneWidth)
	}
	buf := run(t, ctx, chromedp.FullScreenshot(100))
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("%s: screenshot is no PNG: %v", name, err)
	}
	if cfg.Width != phoneWidth || cfg.Height < 200 {
		t.Errorf("%s: screenshot is %d×%d, want %d wide", name, cfg.Width, cfg.Height, phoneWidth)
	}
	dir := os.Getenv("GRANTWATCH_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	small, err := shrinkPNG(buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), small, 0o644); err != nil {
		t.Fatal(err)
	}
}

// shrinkPNG re-encodes a screenshot with a palette of at most 256 colors
// (a third of the size): the colors of 16 levels per channel that cover
// the most pixels, each bin's own most frequent color standing for it, so
// that a small patch of color (a green "ok") keeps its hue.
func shrinkPNG(b []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	type bin struct {
		c           color.RGBA
		best, total int
	}
	exact := map[color.RGBA]int{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			exact[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	bins := map[[3]uint8]*bin{}
	for c, n := range exact {
		k := [3]uint8{c.R >> 4, c.G >> 4, c.B >> 4}
		if bins[k] == nil {
			bins[k] = &bin{}
		}
		bn := bins[k]
		bn.total += n
		if n > bn.best {
			bn.c, bn.best = c, n
		}
	}
	list := slices.SortedFunc(maps.Values(bins), func(a, b *bin) int { return b.total - a.total })
	var pal color.Palette
	for _, bn := range list[:min(len(list), 256)] {
		pal = append(pal, bn.c)
	}
	p := image.NewPaletted(r, pal)
	draw.Draw(p, r, img, r.Min, draw.Src)
	var out bytes.Buffer
	err = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&out, p)
	return out.Bytes(), err
}

// open navigates to u and waits for the page's heading.
func open(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	do(t, ctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS("main h1")))
}

// click clicks the element with id and waits for the next page's sel.
func click(t *testing.T, ctx context.Context, id, sel string) {
	t.Helper()
	do(t, ctx, chromedp.Click(chromedp.ID(id), chromedp.NodeVisible), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// answerAuth answers the tab's HTTP Basic challenges as a person at the
// browser's sign-in box would: with user and key, or, with no user, by
// cancelling it (the browser then shows the 401 page). The last call wins.
func answerAuth(t *testing.T, ctx context.Context, user, key string) {
	t.Helper()
	authMu.Lock()
	authUser, authKey = user, key
	authMu.Unlock()
	if _, seen := authTabs.LoadOrStore(ctx, true); seen {
		return
	}
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	challenged := chromedp.Events(ctx, fetch.AuthRequired)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		for ev, err := range challenged {
			if err != nil {
				return
			}
			authMu.Lock()
			resp := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if authUser != "" {
				resp = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: authUser, Password: authKey}
			}
			authMu.Unlock()
			chromedp.Call(ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: resp})
		}
	}()
	on := true
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &on}); err != nil {
		t.Fatal(err)
	}
}

var (
	authMu            sync.Mutex
	authUser, authKey string
	authTabs          sync.Map
)

// TestBrowserLinkFlow: the link from the notification, the page, the
// provider's consent, the success page; the grant is healthy and
// grant.recovered reached the webhook; the link is spent.
func TestBrowserLinkFlow(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com")
	e.sb.SetConsentPage(true)
	ctx := tab(t)
	link := e.waitEvent(notify.TypeReconnectRequired, "g1").Grant.ReconnectURL

	open(t, ctx, link)
	if got := text(t, ctx); !strings.Contains(got, "Reconnect your Google account") || !strings.Contains(got, "ann@example.com") {
		t.Errorf("link page says %q; want the service and the account", got)
	}
	shot(t, ctx, "reconnect-link")

	click(t, ctx, "reconnect", "#allow")
	if got := run(t, ctx, chromedp.Value(chromedp.ID("account"))); got != "ann@example.com" {
		t.Errorf("the provider was asked for %q, want the grant's account (login_hint)", got)
	}
	click(t, ctx, "allow", "main h1")
	if got := text(t, ctx); !strings.Contains(got, "Reconnected") || !strings.Contains(got, "close this window") {
		t.Errorf("after consent the page says %q; want the success page", got)
	}
	shot(t, ctx, "reconnect-success")
	if u := run(t, ctx, chromedp.Location()); !strings.HasPrefix(u, e.base+"/reconnect/callback?") || strings.Contains(u, "rt_") {
		t.Errorf("the success page is at %s; want the callback, with no token", u)
	}
	if g := e.grant("g1"); g.State != store.StateHealthy {
		t.Errorf("grant after the flow: %s, want healthy", g.State)
	}
	e.waitEvent(notify.TypeRecovered, "g1")

	open(t, ctx, link)
	if got := text(t, ctx); !strings.Contains(got, "already used") {
		t.Errorf("the link opened again says %q; want already used", got)
	}
	shot(t, ctx, "reconnect-used")
}

// TestBrowserErrorPages: the pages of an expired link, an unknown one,
// declined consent, a provider error, another account and a lost sign-in,
// each in plain words and on a phone.
func TestBrowserErrorPages(t *testing.T) {
	e := newEnv(t, envOptions{}, "ann@example.com")
	e.sb.SetConsentPage(true)
	link := e.link("g1", 0)
	tests := []struct {
		name string
		// steps end on the page to check.
		steps func(t *testing.T, ctx context.Context)
		want  string
	}{
		{"reconnect-denied", func(t *testing.T, ctx context.Context) {
			open(t, ctx, link)
			click(t, ctx, "reconnect", "#deny")
			click(t, ctx, "deny", "main h1")
		}, "Access was not allowed"},
		{"reconnect-mismatch", func(t *testing.T, ctx context.Context) {
			open(t, ctx, link)
			click(t, ctx, "reconnect", "#allow")
			do(t, ctx, chromedp.SetValue(chromedp.ID("account"), "mallory@example.com"))
			click(t, ctx, "allow", "main h1")
		}, "That was a different account"},
		{"reconnect-provider-error", func(t *testing.T, ctx context.Context) {
			e.sb.SetAuthorizeError("temporarily_unavailable")
			defer e.sb.SetAuthorizeError("")
			open(t, ctx, link)
			click(t, ctx, "reconnect", "main h1.bad")
		}, "The sign-in did not complete"},
		{"reconnect-invalid", func(t *testing.T, ctx context.Context) {
			open(t, ctx, e.base+"/reconnect/AAAAAAAAAAAAAAAAAAAAAAAAAA")
		}, "This link is not valid"},
		{"reconnect-restart", func(t *testing.T, ctx context.Context) {
			open(t, ctx, e.base+"/reconnect/callback?state=x&code=y")
		}, "Please start again"},
		{"reconnect-expired", func(t *testing.T, ctx context.Context) {
			short := e.link("g1", time.Minute)
			e.clock.advance(time.Minute + time.Second)
			open(t, ctx, short)
		}, "This link has expired"},
	}
	ctx := tab(t) // one tab for all: a new one costs a second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.steps(t, ctx)
			got := text(t, ctx)
			if !strings.Contains(got, tt.want) || !strings.Contains(got, "What to do") {
				t.Errorf("page says %q; want %q and what to do", got, tt.want)
			}
			shot(t, ctx, tt.name)
		})
	}
	if g := e.grant("g1"); g.State != store.StateReconnectRequired {
		t.Errorf("grant after the failures: %s, want still reconnect_required", g.State)
	}
}

// TestBrowserStatusPage: the status page, signed in with a read key,
// shows the fleet; the grant page its history; without a key, a sign-in
// page.
func TestBrowserStatusPage(t *testing.T) {
	// ann reconnected; her new token dies within a week whatever
	// probing does (max_lifetime), bob is still dead.
	e := newEnv(t, envOptions{provider: `max_lifetime = "72h"`}, "ann@example.com", "bob@example.com")
	if r := press(t, browser(t), e.link("g1", 0)); !strings.Contains(r.body, "Reconnected") {
		t.Fatalf("reconnect of ann: %d %s", r.StatusCode, r.body)
	}
	ctx := tab(t)

	answerAuth(t, ctx, "", "") // no key: the browser shows the 401 page
	open(t, ctx, e.base+"/")
	if got := text(t, ctx); !strings.Contains(got, "app key of scope read") {
		t.Errorf("status without a key says %q; want how to sign in", got)
	}
	shot(t, ctx, "status-signin")

	answerAuth(t, ctx, "oncall", e.keys["oncall"])
	open(t, ctx, e.base+"/")
	for sel, want := range map[string]string{
		"#verdict":  "Action needed: 1 to reconnect",
		"#needy":    "bob@example.com",
		"#expiring": "ann@example.com",
		"#counts":   "google",
		"#clock":    "samples",
		"#outbox":   "dead letters",
	} {
		if got := run(t, ctx, chromedp.Text(chromedp.CSS(sel))); !strings.Contains(got, want) {
			t.Errorf("status page %s says %q, want %q", sel, got, want)
		}
	}
	shot(t, ctx, "status")

	do(t, ctx, chromedp.Click(chromedp.CSS(`#needy a[href="/grants/g2"]`)), chromedp.WaitVisible(chromedp.ID("history")))
	if got := text(t, ctx); !strings.Contains(got, "bob@example.com") || !strings.Contains(got, "reconnect required") {
		t.Errorf("grant page says %q", got)
	}
	shot(t, ctx, "status-grant")
}

// TestBrowserLinkWithoutOpenID: for a provider without OpenID Connect (the
// GitHub preset, no openid scope, so no id_token) the account comes from
// its userinfo endpoint (the sandbox's, GitHub's GET /user in shape): a
// link reconnects the grant's account, and refuses another one.
func TestBrowserLinkWithoutOpenID(t *testing.T) {
	e := newEnv(t, envOptions{preset: "github", scopes: `["read:user"]`, userinfo: true}, "ann", "bob")
	e.sb.SetConsentPage(true)
	ctx := tab(t)

	open(t, ctx, e.link("g1", 0))
	if got := text(t, ctx); !strings.Contains(got, "GitHub") || !strings.Contains(got, "ann") {
		t.Errorf("link page says %q; want the service and the account", got)
	}
	click(t, ctx, "reconnect", "#allow")
	click(t, ctx, "allow", "main h1") // signed in as ann (login_hint)
	if got := text(t, ctx); !strings.Contains(got, "Reconnected") {
		t.Errorf("after ann's consent the page says %q; want the success page", got)
	}
	if g := e.grant("g1"); g.State != store.StateHealthy {
		t.Errorf("ann's grant after the flow: %s, want healthy", g.State)
	}

	gen := e.grant("g2").TokenGen
	open(t, ctx, e.link("g2", 0))
	click(t, ctx, "reconnect", "#allow")
	do(t, ctx, chromedp.SetValue(chromedp.ID("account"), "mallory@example.com"))
	click(t, ctx, "allow", "main h1")
	if got := text(t, ctx); !strings.Contains(got, "That was a different account") || !strings.Contains(got, "mallory") || !strings.Contains(got, "bob") {
		t.Errorf("bob's link signed in as mallory says %q; want the mismatch page naming both", got)
	}
	shot(t, ctx, "reconnect-userinfo-mismatch")
	if g := e.grant("g2"); g.TokenGen != gen || g.State != store.StateReconnectRequired {
		t.Errorf("bob's grant after mallory's sign-in: token_gen %d → %d, %s; want unchanged, reconnect_required", gen, g.TokenGen, g.State)
	}
}
