package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// slowLines hands out one line per Read, a pause before each: an import
// long enough to report progress.
type slowLines struct {
	lines []string
	pause time.Duration
}

func (s *slowLines) Read(p []byte) (int, error) {
	if len(s.lines) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	n := copy(p, s.lines[0]+"\n")
	s.lines = s.lines[1:]
	return n, nil
}

// TestProgressPlainOffTerminal: progress written to something that is not
// a terminal (a pipe, a log file) holds no \r and no escape codes, one line
// per update, for grants import and bench alike (issue 12 item 12).
func TestProgressPlainOffTerminal(t *testing.T) {
	s := newCLISetup(t, "")
	in := &slowLines{pause: 150 * time.Millisecond}
	for i := range 8 {
		in.lines = append(in.lines, fmt.Sprintf(`{"id":"slow%d","provider":"acme","refresh_token":%q}`, i, s.sb.Issue(sandbox.Healthy)))
	}
	var out, errw bytes.Buffer
	root := newRoot(in, &out, &errw)
	root.SetArgs([]string{"--config", s.cfgPath, "grants", "import", "-"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errw.String(), "validating: ") {
		t.Fatalf("no progress shown: %q", errw.String())
	}
	checkPlain(t, "grants import", errw.String())

	errw.Reset()
	root = newRoot(strings.NewReader(""), &out, &errw)
	root.SetArgs([]string{"bench", "--grants", "300"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkPlain(t, "bench", errw.String())
}

func checkPlain(t *testing.T, what, s string) {
	t.Helper()
	if strings.ContainsAny(s, "\r\x1b") {
		t.Errorf("%s progress off a terminal holds \\r or an escape code: %q", what, s)
	}
	if s != "" && !strings.HasSuffix(s, "\n") {
		t.Errorf("%s progress does not end its line: %q", what, s)
	}
}
