package daemon

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/store"
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
	for _, s := range importSeeds {
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
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		gs, err := ParseImport(strings.NewReader(string(b)), provider)
		if err != nil {
			if len(gs) != 0 {
				t.Fatalf("%d grants returned with an error", len(gs))
			}
			checkQuotesNoToken(t, b, err, func(masked []byte) error {
				_, err := ParseImport(strings.NewReader(string(masked)), provider)
				return err
			})
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
			if _, ok := provider(g.Provider); !ok {
				t.Fatalf("grant %d has an unknown provider %q", i, g.Provider)
			}
			if g.Observe != observe {
				t.Fatalf("grant %d of %s: Observe = %v", i, g.Provider, g.Observe)
			}
		}
	})
}

// checkQuotesNoToken fails t when err, the error for input b, quotes a
// refresh token of b. The same text may be part of the message itself
// ("efresh_token"): it is quoted from the input only if masking it in the
// input (again(masked) is the error then) removes it from the error.
func checkQuotesNoToken(t *testing.T, b []byte, err error, again func(masked []byte) error) {
	t.Helper()
	msg := err.Error()
	for _, tok := range importTokens(b) {
		if !strings.Contains(msg, tok) {
			continue
		}
		masked := strings.ReplaceAll(string(b), tok, strings.Repeat("Q", len(tok)))
		if err2 := again([]byte(masked)); err2 == nil || !strings.Contains(err2.Error(), tok) {
			t.Fatalf("error quotes a refresh token %q:\n%s", tok, msg)
		}
	}
}

// importSeeds are import inputs for the fuzz targets: good lines, each
// kind of bad one, and lines that carry a token where it does not belong.
var importSeeds = []string{
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
	"\xef\xbb\xbf" + `{"id":"bom","provider":"google","refresh_token":"` + importMarker + `"}`,
	`{"id":"u\u001b[2J","provider":"google","refresh_token":"` + importMarker + `","subject":"a\u202eb","labels":{"":"x","a b":"\u0085"}}`,
	`{"id":"grantwatch-canary","provider":"google","refresh_token":"` + importMarker + `"}`,
}

// importTokens returns what in b could be a line's refresh token: the
// marker (unless it is only the value of another field, which an error may
// quote), and the value of each "refresh_token" that is long enough to be
// told apart from the words an error is made of and appears nowhere else
// in b (a value that is also an id may be quoted as the id).
func importTokens(b []byte) []string {
	var toks []string
	if markedToken.Match(b) {
		toks = append(toks, importMarker)
	}
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

// markedToken finds the marker as (part of) a refresh_token's value, quoted
// or not, alone or in an array or object.
var markedToken = regexp.MustCompile(`"refresh_token"\s*:[\s\[{"]*[^",\]}]*` + importMarker)

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

// TestImportLineProblems checks what an operator is told about each kind of
// bad line: the line, the field and what to do, in plain words; and that a
// UTF-8 BOM at the start is accepted.
func TestImportLineProblems(t *testing.T) {
	ok := `{"id":"u1","provider":"google","refresh_token":"` + importMarker + `"}`
	line := func(fields string) string {
		return `{"id":"u1","provider":"google","refresh_token":"` + importMarker + `"` + fields + `}`
	}
	labels := func(n int) string {
		var kv []string
		for i := range n {
			kv = append(kv, fmt.Sprintf(`"l%d":"v"`, i))
		}
		return `,"labels":{` + strings.Join(kv, ",") + `}`
	}
	tests := []struct {
		name  string
		input string
		want  string // "" means the input is accepted
	}{
		{"a UTF-8 BOM before the first line is accepted", "\xef\xbb\xbf" + ok, ""},
		{"a BOM on a later line is named", ok + "\n\xef\xbb\xbf" + strings.Replace(ok, "u1", "u2", 1), "line 2: starts with a UTF-8 byte order mark"},
		{"UTF-16 input is named", "\xff\xfe{\x00", "line 1: the input is UTF-16"},
		{"an array is not a line", `["u1","google"]`, "line 1: each line must be a JSON object with id, provider and refresh_token (and optionally subject and labels), not a JSON array"},
		{"a string is not a line", `"u1"`, "line 1: each line must be a JSON object"},
		{"no Go type name leaks", `42`, "not a JSON number"},
		{"labels must be strings", line(`,"labels":{"a":1}`), "line 1: labels: must be an object of string values, not a JSON number"},
		{"an empty label name", line(`,"labels":{"":"x"}`), "line 1: labels: a label name is empty"},
		{"a label name with a space", line(`,"labels":{"my team":"x"}`), `line 1: labels: name "my team": use letters, digits and _ . / - and start with a letter or _`},
		{"a label name starting with a digit", line(`,"labels":{"1a":"x"}`), `labels: name "1a"`},
		{"a label name with = (breaks --label k=v)", line(`,"labels":{"a=b":"x"}`), `labels: name "a=b"`},
		{"a dotted, slashed label name is fine", line(`,"labels":{"example.com/team-a_b":"x"}`), ""},
		{"too many labels", line(labels(maxLabels + 1)), fmt.Sprintf("line 1: labels: %d labels, at most %d are allowed", maxLabels+1, maxLabels)},
		{"as many labels as allowed", line(labels(maxLabels)), ""},
		{"a long label name", line(`,"labels":{"` + strings.Repeat("n", maxLabelName+1) + `":"x"}`), fmt.Sprintf("is longer than %d bytes", maxLabelName)},
		{"a long label value", line(`,"labels":{"team":"` + strings.Repeat("v", maxLabelValue+1) + `"}`), fmt.Sprintf("line 1: labels.team: value longer than %d bytes", maxLabelValue)},
		{"a long subject", line(`,"subject":"` + strings.Repeat("s", maxSubjectLen+1) + `"`), fmt.Sprintf("line 1: subject: longer than %d bytes", maxSubjectLen)},
		{"a subject at the limit", line(`,"subject":"` + strings.Repeat("s", maxSubjectLen) + `"`), ""},
		{"the canary's id is reserved", strings.Replace(ok, `"u1"`, `"grantwatch-canary"`, 1), `line 1: id: "grantwatch-canary" is reserved by grantwatch`},
		{"an unknown field names the fields", line(`,"token":"x"`), `unknown field "token" (the fields are id, provider, refresh_token, subject, labels)`},
	}
	known := func(p string) (config.ProviderConfig, bool) { return config.ProviderConfig{Name: p}, p == "google" }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gs, err := ParseImport(strings.NewReader(tt.input), known)
			if tt.want == "" {
				if err != nil || len(gs) != 1 {
					t.Fatalf("got %d grants, %v; want the line accepted", len(gs), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got\n%v\nwant it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "daemon.") || strings.Contains(err.Error(), "importLine") {
				t.Errorf("the error names a Go type: %v", err)
			}
			if strings.Contains(err.Error(), importMarker) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}

// TestImportRefusesTerminalControls: ids, subjects and label names and
// values that would drive the operator's terminal (C0/C1 controls, escape
// sequences, bidi overrides) are refused at import, naming the line, the
// field and the character, so that nothing printed later can carry them.
func TestImportRefusesTerminalControls(t *testing.T) {
	tests := []struct {
		name, field, value, want string
	}{
		{"ESC in an id", "id", `u1\u001b[2J`, `line 2: id: control character U+001B (^[) at byte 2`},
		{"a bidi override in an id", "id", "u1\u202egpj.exe", "line 2: id: bidirectional control character U+202E"},
		{"a newline in a subject", "subject", `ann\n@example.com`, `line 2: subject: control character U+000A (\n) at byte 3`},
		{"a C1 CSI in a subject", "subject", "ann\u009b31m", "line 2: subject: C1 control character U+009B"},
		{"OSC in a label value", "labels.team", `ops\u001b]0;pwned\u0007`, "line 2: labels.team: control character U+001B"},
		{"an isolate in a label name", "labels", "\u2066team", "line 2: labels: a label name: bidirectional control character U+2066"},
		{"a tab in a label value", "labels.team", `a\tb`, `line 2: labels.team: control character U+0009 (\t)`},
		{"DEL in an id", "id", `u\u007f1`, "line 2: id: control character U+007F"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := map[string]any{"id": "u2", "provider": "google", "refresh_token": importMarker}
			switch {
			case tt.field == "labels":
				l["labels"] = map[string]string{tt.value: "x"}
			case strings.HasPrefix(tt.field, "labels."):
				l["labels"] = map[string]string{strings.TrimPrefix(tt.field, "labels."): "PLACEHOLDER"}
			default:
				l[tt.field] = "PLACEHOLDER"
			}
			b, _ := json.Marshal(l)
			// The value goes in as JSON would carry it: \u escapes decode
			// to the raw characters.
			raw := strings.Replace(string(b), `"PLACEHOLDER"`, `"`+tt.value+`"`, 1)
			if tt.field == "labels" {
				raw = string(b)
			}
			input := `{"id":"u1","provider":"google","refresh_token":"` + importMarker + `"}` + "\n" + raw + "\n"
			_, err := ParseImport(strings.NewReader(input), func(p string) (config.ProviderConfig, bool) { return config.ProviderConfig{Name: p}, true })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tt.want)
			}
			if strings.ContainsAny(err.Error(), "\x1b\u202e\u2066\u009b\x07\x7f") {
				t.Errorf("the error itself carries the character: %q", err)
			}
		})
	}
}

// TestReservedIDMatchesStore keeps reservedID in step with the store: the
// id the parser refuses is one the store refuses too, so that no input
// passes validation and then fails halfway through the write.
func TestReservedIDMatchesStore(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "gw.db"), store.Options{Key: make([]byte, store.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, _, err = db.Import([]store.NewGrant{{ID: reservedID, Provider: "p", RefreshToken: "t"}}, time.Now(), store.ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("the store imported %q: %v", reservedID, err)
	}
}

// TestImportFindsDuplicatesAfterTheFirstPass: a duplicate id is found by its
// hash in one pass and confirmed by a second read, wherever it is.
func TestImportFindsDuplicatesAfterTheFirstPass(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, `{"id":"g%d","provider":"google","refresh_token":"t%d"}`+"\n", i, i)
	}
	b.WriteString(`{"id":"g17","provider":"google","refresh_token":"again"}` + "\n")
	b.WriteString(`{"id":"g4999","provider":"google","refresh_token":"again"}` + "\n")
	_, err := ParseImport(strings.NewReader(b.String()), func(p string) (config.ProviderConfig, bool) { return config.ProviderConfig{Name: p}, true })
	for _, want := range []string{`line 5001: id: "g17" appears again (first on line 18)`, `line 5002: id: "g4999" appears again (first on line 5000)`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v\nwant %q", err, want)
		}
	}
}
