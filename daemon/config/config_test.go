package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/notify"
)

// exampleConfig is config.example.toml with its /etc/grantwatch paths moved
// into dir (and the files they name created), so it validates here.
func exampleConfig(t *testing.T) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := strings.ReplaceAll(string(b), "/etc/grantwatch/", dir+"/")
	for _, f := range []string{"google.secret", "webhook.secret"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "grantwatch.toml"), []byte(s)
}

func TestExampleConfigIsValid(t *testing.T) {
	path, b := exampleConfig(t)
	c, err := Parse(path, b)
	if err != nil {
		t.Fatalf("config.example.toml does not load: %v", err)
	}
	if got := c.Providers[0].TokenURL; got != "https://oauth2.googleapis.com/token" {
		t.Errorf("preset google gave token_url %q", got)
	}
	if c.Daemon.Workers != 32 || c.Daemon.Tick != "@every 5s" || c.Clock.MaxOffset != 30*time.Second {
		t.Errorf("example values differ from the defaults it documents: %+v %+v", c.Daemon, c.Clock)
	}
}

// TestExampleConfigShowsEveryKey keeps config.example.toml true to the code:
// every key of the config structs appears in it, set or commented.
func TestExampleConfigShowsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := f.Tag.Get("toml")
			if key == "" || key == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
				walk(prefix+key+".", ft)
			}
			if !strings.Contains(text, key+" =") && !strings.Contains(text, key+" = ") && !strings.Contains(text, "["+key+"]") && !strings.Contains(text, "[["+key+"]]") && !strings.Contains(text, key+" = {") {
				t.Errorf("config key %s%s is not shown in config.example.toml", prefix, key)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
	_ = notify.Config{}
}

func TestConfigErrorsNameEveryKey(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"unknown key", "[daemon]\nworkerz = 3\n", []string{"daemon.workerz: unknown key"}},
		{"tls key without its certificate", "[daemon]\ntls_key_file = \"k.pem\"\n", []string{"daemon.tls_cert_file: set tls_cert_file and tls_key_file together"}},
		{"client CA without TLS", "[daemon]\ntls_client_ca_file = \"ca.pem\"\n", []string{"daemon.tls_client_ca_file: needs tls_cert_file"}},
		{"broker wait", "[broker]\nwait = \"1ms\"\nrefresh_pace = 5\n", []string{"broker.wait: must be between", "broker.refresh_pace: a duration is a string"}},
		{"every problem at once", `
[daemon]
tick = "every five seconds"
workers = 0
[log]
level = "loud"
[[providers]]
name = "a"
token_url = "http://example.com/token"
interval = "10ms"
`, []string{"daemon.tick:", "log.level:", "providers.a.token_url: must be https", "providers.a.client_id: is required", "providers.a.interval: must be at least 1s"}},
		{"duplicate provider", `
[[providers]]
name = "a"
preset = "google"
client_id = "x"
[[providers]]
name = "a"
preset = "google"
client_id = "y"
`, []string{"providers.a.name: is used by more than one provider"}},
		{"unknown preset", "[[providers]]\nname = \"a\"\npreset = \"gogle\"\nclient_id = \"x\"\n", []string{`providers.a.preset: unknown preset "gogle"`}},
		{"secret twice", "[[providers]]\nname = \"a\"\npreset = \"google\"\nclient_id = \"x\"\nclient_secret = \"s\"\nclient_secret_file = \"/nonexistent\"\n", []string{"providers.a.client_secret: set client_secret or client_secret_file, not both"}},
		{"syntax", "[daemon\n", []string{"grantwatch.toml:"}},
		// 30 would be 30 nanoseconds.
		{"bare number duration", "[daemon]\nprobe_timeout = 30\n", []string{`daemon.probe_timeout: a duration is a string with a unit, such as "30s"`}},
		{"unknown mode", "[[providers]]\nname = \"a\"\npreset = \"google\"\nclient_id = \"x\"\nmode = \"watch\"\n", []string{`providers.a.mode: must be "refresh" or "observe", not "watch"`}},
		{"bad rotation grace", "[[providers]]\nname = \"a\"\npreset = \"okta\"\ntoken_url = \"https://x.okta.com/oauth2/v1/token\"\nclient_id = \"x\"\nrotation_grace = \"-1s\"\n[[providers]]\nname = \"b\"\npreset = \"okta\"\ntoken_url = \"https://x.okta.com/oauth2/v1/token\"\nclient_id = \"x\"\nrotation_grace = 30\n",
			[]string{"providers.a.rotation_grace: must be between 0s and 24h", "rotation_grace: a duration is a string with a unit"}},
		{"userinfo_url must be https", "[[providers]]\nname = \"a\"\npreset = \"github\"\nclient_id = \"x\"\nuserinfo_url = \"http://api.example.com/user\"\n", []string{"providers.a.userinfo_url: must be https"}},
		{"observe still checks a token_url given", "[[providers]]\nname = \"a\"\nmode = \"observe\"\ntoken_url = \"http://example.com/token\"\n", []string{"providers.a.token_url: must be https"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantErrors(t, tt.toml, tt.want...) })
	}
}

// TestProviderModeAndGrace: a provider in observe mode needs neither
// token_url nor client_id (grantwatch never sends it a request); a provider
// takes its preset's rotation grace unless rotation_grace says otherwise,
// "0s" included.
func TestProviderModeAndGrace(t *testing.T) {
	c, err := Parse("/tmp/x/grantwatch.toml", []byte(`
[[providers]]
name = "app"
preset = "hydra"
mode = "observe"
[[providers]]
name = "okta"
preset = "okta"
token_url = "https://example.okta.com/oauth2/v1/token"
client_id = "x"
[[providers]]
name = "okta-strict"
preset = "okta"
token_url = "https://example.okta.com/oauth2/v1/token"
client_id = "x"
rotation_grace = "0s"
[[providers]]
name = "auth0"
preset = "auth0"
token_url = "https://example.auth0.com/oauth/token"
client_id = "x"
rotation_grace = "2m"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		observe bool
		grace   time.Duration
	}{
		"app": {true, 0}, "okta": {false, 30 * time.Second}, "okta-strict": {false, 0}, "auth0": {false, 2 * time.Minute},
	}
	for name, w := range want {
		p, _ := c.Provider(name)
		if p.Observe() != w.observe || p.Grace() != w.grace {
			t.Errorf("%s: observe %v, grace %s; want %v, %s", name, p.Observe(), p.Grace(), w.observe, w.grace)
		}
	}
	if p, _ := c.Provider("okta"); p.Mode != ModeRefresh {
		t.Errorf("default mode %q, want %q", p.Mode, ModeRefresh)
	}
}

func TestConfigSecretNotInErrors(t *testing.T) {
	_, err := Parse("/tmp/x/grantwatch.toml", []byte("[[providers]]\nname = \"a\"\ntoken_url = \"ftp://x\"\nclient_id = \"x\"\nclient_secret = \"TOPSECRET\"\n"))
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("error %v", err)
	}
}

// maxFuzzInput bounds fuzz inputs: Load's own limit (1 MiB) is tested
// directly (TestLoadBounded), and larger inputs only slow the fuzzer
// down.
const maxFuzzInput = 64 << 10

// configKey is how a config error starts: a key such as daemon.tick,
// providers.google.token_url, providers[2].name, clock.servers[0],
// notify.hook.url, or a dotted key the decoder did not know.
var configKey = regexp.MustCompile(`^(` + keyPart + `)(\.(` + keyPart + `)|\[\d+\])*: `)

// keyPart is one part of a dotted key: bare, or quoted as TOML quotes it.
const keyPart = `[A-Za-z0-9_\-]+|"([^"\\]|\\.)*"`

// FuzzParseConfig feeds arbitrary bytes to Parse: it must not panic,
// and an error must start with the file's name and, when the file decoded,
// list problems that each start with the key they are about.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "..", "config.example.toml"))
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
		cfg, err := Parse(path, b)
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

// TestLoadBounded checks that a config path naming something huge or
// endless is refused after a bounded read.
func TestLoadBounded(t *testing.T) {
	_, err := Load("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "/dev/zero: larger than") {
		t.Fatalf("Load(/dev/zero) = %v, want a size error naming the file", err)
	}
	// A *_file is read when the daemon builds its receivers (not at load,
	// see notify.ValidateConfigs), with the same bound.
	dir := t.TempDir()
	toml := "[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"/dev/zero\"\n"
	cfg, err := Parse(filepath.Join(dir, "grantwatch.toml"), []byte(toml))
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

// TestProviderUserInfo: userinfo_url overrides the preset's endpoint and
// keeps its member names; without a preset that has one, the generic
// names apply; without userinfo_url, the preset's endpoint.
func TestProviderUserInfo(t *testing.T) {
	tests := []struct {
		name, preset, url string
		wantURL           string
		wantID            []string
	}{
		{"preset", "github", "", "https://api.github.com/user", []string{"id"}},
		{"GitHub Enterprise", "github", "https://ghe.example.com/api/v3/user", "https://ghe.example.com/api/v3/user", []string{"id"}},
		{"generic", "okta", "https://example.okta.com/oauth2/v1/userinfo", "https://example.okta.com/oauth2/v1/userinfo", []string{"sub", "id", "account_id"}},
		{"none", "google", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ProviderConfig{Preset: tt.preset, UserInfoURL: tt.url}.UserInfo()
			if got.URL != tt.wantURL || !reflect.DeepEqual(got.ID, tt.wantID) {
				t.Errorf("UserInfo() = %q %v, want %q %v", got.URL, got.ID, tt.wantURL, tt.wantID)
			}
		})
	}
}
