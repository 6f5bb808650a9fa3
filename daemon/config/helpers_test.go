package config

import (
	"strings"
	"testing"
)

// wantErrors checks that Parse refuses toml with an error saying each of
// want.
func wantErrors(t *testing.T, toml string, want ...string) {
	t.Helper()
	_, err := Parse("/tmp/x/grantwatch.toml", []byte(toml))
	if err == nil {
		t.Fatalf("no error, want one saying %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
}
