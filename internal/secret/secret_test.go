package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("1//0gTOKEN-value")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "token", s)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "token", s)
	j, err := json.Marshal(struct{ T Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(j)
	fmt.Fprintf(&buf, "%s %v %+v %#v %q", s, s, s, s, s)
	if strings.Contains(buf.String(), "TOKEN") {
		t.Fatalf("secret leaked: %s", buf.String())
	}
	if got := s.Reveal(); got != "1//0gTOKEN-value" {
		t.Fatalf("Reveal() = %q", got)
	}
}
