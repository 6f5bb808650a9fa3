package daemon

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/grantwatch/grantwatch/daemon/config"
)

// maxFuzzInput bounds fuzz inputs: the parser's own limit (64 KiB per
// import line) is tested directly (TestImportLimits), and larger inputs
// only slow the fuzzer down.
const maxFuzzInput = 64 << 10

// importMarker is the token on the import seed lines: an error that
// contains it quotes a token.
const importMarker = "SEKRET-rt-0451"

// FuzzParseImport feeds arbitrary bytes to ParseImport: it must not panic,
// a grant it returns has an id, a provider and a token (a grant of a
// provider in observe mode may have none, and is marked Observe), and no
// error quotes the refresh token of any line.
func FuzzParseImport(f *testing.F) {
	for _, s := range []string{
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker + `"}`,
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker + `","subject":"ann@example.com","labels":{"tenant":"acme"}}`,
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker + `"}` + "\n" +
			`{"id":"u1","provider":"google","refresh_token":"` + importMarker + `"}`,
		`{"id":"","provider":"","refresh_token":"` + importMarker + `"}`,
		`{"id":"a/b","provider":"nope","refresh_token":"` + importMarker + `"}`,
		`{"id":"u1","provider":"google","refresh_token":` + importMarker + `}`,
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker,
		`{"id":"u1","provider":"google","refresh_token":["` + importMarker + `"]}`,
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker + `","token":"` + importMarker + `"}`,
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker + `"} {"id":"u2"}`,
		`{"id":"u1","provider":"google","refresh_token":"   "}`,
		`{"id":` + `"` + importMarker + `","provider":"google"}`,
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker + `","labels":{"a":1}}`,
		`{"id":"u1","provider":"google","refresh_token":"` + importMarker + "\x00\"}",
		`["` + importMarker + `"]`,
		`"` + importMarker + `"`,
		"# comment\n\n   \n",
		"",
		"\xff\xfe",
		`{"id":"u1","provider":"google","refresh_token":null}`,
		`{"id":null,"provider":null,"refresh_token":null}`,
		strings.Repeat(`{"id":"x","provider":"google","refresh_token":"t"}`+"\n", 3),
		`{"id":"u1","provider":"app"}`,
		`{"id":"u1","provider":"app","refresh_token":"` + importMarker + `"}`,
		`{"id":"u1","provider":"google"}`,
	} {
		f.Add([]byte(s))
	}
	provider := func(p string) (config.ProviderConfig, bool) {
		switch p {
		case "google", "microsoft":
			return config.ProviderConfig{Name: p, Mode: config.ModeRefresh}, true
		case "app":
			return config.ProviderConfig{Name: p, Mode: config.ModeObserve}, true
		}
		return config.ProviderConfig{}, false
	}
	known := func(p string) bool { _, ok := provider(p); return ok }
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		gs, err := ParseImport(strings.NewReader(string(b)), provider)
		if err != nil {
			if len(gs) != 0 {
				t.Fatalf("%d grants returned with an error", len(gs))
			}
			msg := err.Error()
			for _, tok := range importTokens(b) {
				if !strings.Contains(msg, tok) {
					continue
				}
				// The same text may be part of the message itself
				// ("efresh_token"): it is quoted from the input only if
				// masking it in the input removes it from the error.
				masked := strings.ReplaceAll(string(b), tok, strings.Repeat("Q", len(tok)))
				_, err2 := ParseImport(strings.NewReader(masked), provider)
				if err2 == nil || !strings.Contains(err2.Error(), tok) {
					t.Fatalf("error quotes a refresh token %q:\n%s", tok, msg)
				}
			}
			return
		}
		if len(gs) == 0 {
			t.Fatal("no grants and no error")
		}
		for i, g := range gs {
			observe := g.Provider == "app"
			if strings.TrimSpace(g.ID) == "" || g.Provider == "" || strings.TrimSpace(g.RefreshToken.Reveal()) == "" && !observe {
				t.Fatalf("grant %d is missing its id, provider or token: %q %q (token %d bytes)", i, g.ID, g.Provider, len(g.RefreshToken))
			}
			if !known(g.Provider) {
				t.Fatalf("grant %d has an unknown provider %q", i, g.Provider)
			}
			if g.Observe != observe {
				t.Fatalf("grant %d of %s: Observe = %v", i, g.Provider, g.Observe)
			}
		}
	})
}

// importTokens returns what in b could be a line's refresh token: the
// marker, and the value of each "refresh_token" that is long enough to be
// told apart from the words an error is made of and appears nowhere else
// in b (a value that is also an id may be quoted as the id).
func importTokens(b []byte) []string {
	toks := []string{importMarker}
	values := map[string]int{}
	for _, m := range refreshTokenValue.FindAllSubmatch(b, -1) {
		values[string(m[1])]++
	}
	for v, n := range values {
		if len(v) >= 12 && utf8.ValidString(v) && !strings.ContainsAny(v, `\`) &&
			strings.Count(string(b), v) == n {
			toks = append(toks, v)
		}
	}
	return toks
}

var refreshTokenValue = regexp.MustCompile(`"refresh_token"\s*:\s*"([^"]*)"`)

// TestImportLimits checks ParseImport's bounds without the fuzzer: a line
// over 64 KiB fails with its number and no content.
func TestImportLimits(t *testing.T) {
	long := `{"id":"u1","provider":"google","refresh_token":"` + importMarker + strings.Repeat("x", maxImportLine) + `"}`
	_, err := ParseImport(strings.NewReader("\n"+long+"\n"), func(string) (config.ProviderConfig, bool) { return config.ProviderConfig{}, true })
	if err == nil || !strings.Contains(err.Error(), "line 2: longer than") {
		t.Fatalf("got %v, want line 2 too long", err)
	}
	if strings.Contains(err.Error(), importMarker) {
		t.Fatalf("error quotes the token: %v", err)
	}
}

// TestParseImportObserve: only a grant of a provider in observe mode may
// come without refresh_token; it is imported as such (NewGrant.Observe).
func TestParseImportObserve(t *testing.T) {
	provider := func(p string) (config.ProviderConfig, bool) {
		mode := map[string]string{"google": config.ModeRefresh, "app": config.ModeObserve}[p]
		return config.ProviderConfig{Name: p, Mode: mode}, mode != ""
	}
	gs, err := ParseImport(strings.NewReader(`{"id":"a","provider":"app"}`+"\n"+`{"id":"b","provider":"google","refresh_token":"t"}`), provider)
	if err != nil || len(gs) != 2 || !gs[0].Observe || !gs[0].RefreshToken.IsZero() || gs[1].Observe {
		t.Fatalf("ParseImport = %+v, %v; want a observed without token, b not", gs, err)
	}
	_, err = ParseImport(strings.NewReader(`{"id":"c","provider":"google"}`), provider)
	if err == nil || !strings.Contains(err.Error(), `line 1: refresh_token: is required (only a provider with mode = "observe"`) {
		t.Errorf("a refreshing provider's grant without token: %v", err)
	}
}
