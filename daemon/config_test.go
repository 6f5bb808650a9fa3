package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/notify"
)

// exampleConfig is config.example.toml with its /etc/grantwatch paths moved
// into dir (and the files they name created), so it validates here.
func exampleConfig(t *testing.T) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile("../config.example.toml")
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
	c, err := ParseConfig(path, b)
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
	b, err := os.ReadFile("../config.example.toml")
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("/tmp/x/grantwatch.toml", []byte(tt.toml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigSecretNotInErrors(t *testing.T) {
	_, err := ParseConfig("/tmp/x/grantwatch.toml", []byte("[[providers]]\nname = \"a\"\ntoken_url = \"ftp://x\"\nclient_id = \"x\"\nclient_secret = \"TOPSECRET\"\n"))
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("error %v", err)
	}
}
