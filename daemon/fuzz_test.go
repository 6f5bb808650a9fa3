package daemon

import (
	"github.com/grantwatch/grantwatch/daemon/notify"

	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// maxFuzzInput bounds fuzz inputs: the parsers' own limits (64 KiB per
// import line, 1 MiB per config) are tested directly (TestImportLimits,
// TestLoadConfigBounded), and larger inputs only slow the fuzzer down.
const maxFuzzInput = 64 << 10

// configKey is how a config error starts: a key such as daemon.tick,
// providers.google.token_url, providers[2].name, clock.servers[0],
// notify.hook.url, or a dotted key the decoder did not know.
var configKey = regexp.MustCompile(`^(` + keyPart + `)(\.(` + keyPart + `)|\[\d+\])*: `)

// keyPart is one part of a dotted key: bare, or quoted as TOML quotes it.
const keyPart = `[A-Za-z0-9_\-]+|"([^"\\]|\\.)*"`

// FuzzParseConfig feeds arbitrary bytes to ParseConfig: it must not panic,
// and an error must start with the file's name and, when the file decoded,
// list problems that each start with the key they are about.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "config.example.toml"))
	if err == nil {
		f.Add(example)
	}
	for _, s := range []string{
		"",
		"[daemon]\ntick = \"@every 5s\"\n",
		"[daemon]\ntick = \"every now and then\"\nworkers = -1\nprobe_timeout = \"1ns\"\n",
		"[daemon]\nlisten = \"\"\n[clock]\nservers = []\n",
		"[daemon]\nunknown = 1\n[nope]\nx = 2\n",
		"[[providers]]\nname = \"g\"\npreset = \"google\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
		"[[providers]]\nname = \"a b/c\"\ntoken_url = \"http://example.com/token\"\n",
		"[[providers]]\nname = \"x\"\n[[providers]]\nname = \"x\"\nschedule = \"61 * * * *\"\ninterval = \"1h\"\n",
		"[[providers]]\ntoken_url = \"::\"\nauth_style = \"both\"\nrate = -1\nconcurrency = -3\n",
		"[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://example.com/hook\"\ngroup_wait = \"0s\"\n",
		"[[notify]]\ntype = \"smoke-signal\"\nevents = [\"nothing.*\"]\ngroup_by = [\"moon\"]\n",
		"[[notify]]\nname = \"f\"\ntype = \"webhook\"\nurl_file = \"/nonexistent/url\"\n",
		"[health]\nwindow = 0\nthreshold = 2.5\n",
		"[log]\nlevel = \"loud\"\nformat = \"xml\"\n",
		"[daemon\n",
		"x = \"unterminated\n",
		"[[providers]]\nname = 1\n",
		"daemon = 5\n",
		"[clock]\nservers = [\"\", \"a b\", \"/x\"]\nmax_offset = \"-1s\"\n",
		strings.Repeat("[a]\n", 100),
		"\xff\xfe\x00",
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "grantwatch.toml")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		// Paths of devices and procfs may block (a fifo, /dev/stdin) when a
		// *_file key names them; reading them is not what is fuzzed here.
		if strings.Contains(string(b), "/dev/") || strings.Contains(string(b), "/proc/") {
			return
		}
		cfg, err := ParseConfig(path, b)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without an error")
			}
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, path+": ") {
			t.Fatalf("error does not name the file:\n%s", msg)
		}
		// A decoded file's problems are joined; each names its key.
		if inner := errors.Unwrap(err); inner != nil && strings.Contains(msg, ": invalid config:\n") {
			for _, e := range flatten(inner) {
				if !configKey.MatchString(e.Error()) {
					t.Fatalf("problem does not start with its key: %q", e.Error())
				}
			}
		}
	})
}

// flatten returns the leaves of a tree of errors.Join errors.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// importMarker is the token on the import seed lines: an error that
// contains it quotes a token.
const importMarker = "SEKRET-rt-0451"

// FuzzParseImport feeds arbitrary bytes to ParseImport: it must not panic,
// a grant it returns has an id, a provider and a token, and no error quotes
// the refresh token of any line.
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
	} {
		f.Add([]byte(s))
	}
	known := func(p string) bool { return p == "google" || p == "microsoft" }
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		gs, err := ParseImport(strings.NewReader(string(b)), known)
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
				_, err2 := ParseImport(strings.NewReader(masked), known)
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
			if strings.TrimSpace(g.ID) == "" || g.Provider == "" || strings.TrimSpace(g.RefreshToken.Reveal()) == "" {
				t.Fatalf("grant %d is missing its id, provider or token: %q %q (token %d bytes)", i, g.ID, g.Provider, len(g.RefreshToken))
			}
			if !known(g.Provider) {
				t.Fatalf("grant %d has an unknown provider %q", i, g.Provider)
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
	_, err := ParseImport(strings.NewReader("\n"+long+"\n"), func(string) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "line 2: longer than") {
		t.Fatalf("got %v, want line 2 too long", err)
	}
	if strings.Contains(err.Error(), importMarker) {
		t.Fatalf("error quotes the token: %v", err)
	}
}

// TestLoadConfigBounded checks that a config path naming something huge or
// endless is refused after a bounded read.
func TestLoadConfigBounded(t *testing.T) {
	_, err := LoadConfig("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "/dev/zero: larger than") {
		t.Fatalf("LoadConfig(/dev/zero) = %v, want a size error naming the file", err)
	}
	// A *_file is read when the daemon builds its receivers (not at load,
	// see notify.ValidateConfigs), with the same bound.
	dir := t.TempDir()
	toml := "[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"/dev/zero\"\n"
	cfg, err := ParseConfig(filepath.Join(dir, "grantwatch.toml"), []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	disp, err := notify.NewDispatcher(nil, cfg.Notify, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := disp.SetupErr(); err == nil || !strings.Contains(err.Error(), "url_file: read /dev/zero: larger than") {
		t.Fatalf("url_file = /dev/zero: %v, want a size error", err)
	}
}
