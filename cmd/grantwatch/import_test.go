package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/store"
)

// importConfig writes a config with one provider, p, and the given [daemon]
// keys, and returns its path.
func importConfig(t *testing.T, dir, daemonKeys string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
[daemon]
db = "gw.db"
socket = "gw.sock"
listen = ""
probe_timeout = "1s"
shutdown_timeout = "2s"
%s
[clock]
servers = []
[[providers]]
name = "p"
token_url = "http://127.0.0.1:9/token"
client_id = "c"
client_secret = "import-client-secret"
interval = "1h"
`, daemonKeys)
	path := filepath.Join(dir, "grantwatch.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// grantLines is n import lines of provider p with ids prefix-0….
func grantLines(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"id":"%s-%d","provider":"p","refresh_token":"rt-import-%s-%d-%s","subject":"u%d@example.com","labels":{"tenant":"t%d"}}`+"\n",
			prefix, i, prefix, i, strings.Repeat("x", 100), i, i%7)
	}
	return b.String()
}

// spools lists the import spool files left in dir.
func spools(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".gw.db.import-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestImportRefusesADirectory(t *testing.T) {
	dir := t.TempDir()
	cfg := importConfig(t, dir, "")
	_, _, err := cli(t, cfg, "", "grants", "import", dir)
	if err == nil || !strings.Contains(err.Error(), dir+" is a directory: name a JSON Lines file of grants (or - for stdin)") {
		t.Fatalf("import of a directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gw.db")); err == nil {
		t.Error("a database was created for an import that read nothing")
	}
}

// TestImportTotalSizeCap: an input over daemon.import_max_bytes is refused
// with the key named, nothing is imported, and its spool is gone.
func TestImportTotalSizeCap(t *testing.T) {
	dir := t.TempDir()
	cfg := importConfig(t, dir, "import_max_bytes = 4096")
	// The server must not panic on a connection whose import it refused
	// before reading it all (golang/go#68560); it logs a panic through the
	// standard logger. It happened about once in ten imports.
	var logged testutil.LogBuffer
	log.SetOutput(&logged)
	defer log.SetOutput(os.Stderr)
	in := grantLines("big", 100) // ~20 KB
	for range 20 {
		_, _, err := cli(t, cfg, in, "grants", "import", "-")
		if err == nil || !strings.Contains(err.Error(), "nothing imported: the input is larger than daemon.import_max_bytes (4096 bytes)") {
			t.Fatalf("import over the cap: %v", err)
		}
	}
	if strings.Contains(logged.String(), "panic") {
		t.Errorf("the control API panicked after refusing the import:\n%s", logged.String())
	}
	if s := spools(t, dir); len(s) != 0 {
		t.Errorf("spool files left behind: %v", s)
	}
	// Under the cap, the same command imports.
	out, _, err := cli(t, cfg, grantLines("small", 10), "grants", "import", "-")
	if err != nil || !strings.Contains(out, "imported 10 grants") {
		t.Fatalf("import under the cap: %v %q", err, out)
	}
	out, _, err = cli(t, cfg, "", "grants", "list", "--json")
	var gs []store.Grant
	if err != nil || json.Unmarshal([]byte(out), &gs) != nil || len(gs) != 10 {
		t.Fatalf("grants after the refused and the good import: %v, %d, want the 10 of the good one", err, len(gs))
	}
	if s := spools(t, dir); len(s) != 0 {
		t.Errorf("spool files left after a finished import: %v", s)
	}
	st := statusJSON(t, cfg)
	if len(st.Imports) != 0 {
		t.Errorf("status lists imports after a finished one: %+v", st.Imports)
	}
}

// statusJSON runs status --json in-process (it exits 1 when something needs
// action: that is not an error here).
func statusJSON(t *testing.T, cfg string) api.Status {
	t.Helper()
	out, errOut, _ := cli(t, cfg, "", "status", "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s%s", err, out, errOut)
	}
	return st
}

// TestImportCrashResumes kills the built binary with SIGKILL while it writes
// a 50,000-line import — the daemon (the CLI importing over its socket) and,
// with no daemon, the CLI itself — and checks that the next start finishes
// the import from its spool: every line imported exactly once (50,000
// grants, each at token generation 1), the spool gone, the outcome in the
// log and in status, and the CLI that lost its daemon saying what happens.
func TestImportCrashResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 50,000 grants twice through the built binary")
	}
	const n = 50_000
	bin := grantwatchBinary(t)
	for _, mode := range []string{"daemon", "local"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			cfg := importConfig(t, dir, "")
			jsonl := filepath.Join(dir, "grants.jsonl")
			if err := os.WriteFile(jsonl, []byte(grantLines("c", n)), 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &testutil.LogBuffer{}
			var daemonCmd *exec.Cmd
			var daemonDone chan error
			startDaemon := func() {
				starts := strings.Count(logs.String(), "grantwatch started")
				daemonCmd = exec.Command(bin, "--config", cfg, "run")
				daemonCmd.Stdout, daemonCmd.Stderr = logs, logs
				if err := daemonCmd.Start(); err != nil {
					t.Fatal(err)
				}
				daemonDone = make(chan error, 1)
				go func() { daemonDone <- daemonCmd.Wait() }()
				testutil.WaitFor(t, 20*time.Second, "the daemon to serve", func() bool {
					select {
					case err := <-daemonDone:
						t.Fatalf("the daemon stopped: %v\n%s", err, logs.String())
					default:
					}
					return strings.Count(logs.String(), "grantwatch started") > starts
				})
			}
			stopDaemon := func() {
				daemonCmd.Process.Signal(syscall.SIGTERM)
				if err := <-daemonDone; err != nil {
					t.Errorf("daemon: %v\n%s", err, logs.String())
				}
			}
			if mode == "daemon" {
				startDaemon()
			}

			imp := exec.Command(bin, "--config", cfg, "grants", "import", jsonl)
			impOut, impErr := &testutil.LogBuffer{}, &testutil.LogBuffer{}
			imp.Stdout, imp.Stderr = impOut, impErr
			if err := imp.Start(); err != nil {
				t.Fatal(err)
			}
			impDone := make(chan error, 1)
			go func() { impDone <- imp.Wait() }()

			// Kill once some batches are stored and others are not.
			victim := imp
			if mode == "daemon" {
				victim = daemonCmd
			}
			// The CLI shows the grants written so far (the daemon's count,
			// or its own with no daemon).
			written := regexp.MustCompile(`importing: [1-9][0-9]* of`)
			testutil.WaitFor(t, 60*time.Second, "the import to be half written", func() bool {
				select {
				case err := <-impDone:
					t.Fatalf("the import ended before the kill: %v\n%s%s", err, impOut.String(), impErr.String())
				default:
				}
				return written.MatchString(impErr.String())
			})
			if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			impResult := <-impDone
			if mode == "daemon" {
				<-daemonDone
				if impResult == nil {
					t.Fatalf("the import succeeded although its daemon was killed:\n%s", impOut.String())
				}
				for _, want := range []string{"the daemon stopped answering while it wrote import-1", "finishes the import from its spool when it starts again", "grantwatch status"} {
					if !strings.Contains(impErr.String(), want) {
						t.Errorf("the CLI's error lacks %q:\n%s", want, impErr.String())
					}
				}
			}
			if s := spools(t, dir); len(s) != 1 {
				t.Fatalf("spools after the kill: %v, want the import's", s)
			}

			// The next start finishes it: the daemon's, in the background,
			// or with no daemon the next import, before its own input.
			if mode == "daemon" {
				startDaemon()
				testutil.WaitFor(t, 60*time.Second, "the interrupted import to be finished", func() bool {
					st := statusJSON(t, cfg)
					return len(st.Imports) == 1 && st.Imports[0].State == api.ImportFinished
				})
				st := statusJSON(t, cfg)
				j := st.Imports[0]
				if j.ID != "import-1" || j.Source != jsonl || j.Lines != n || j.Committed != n || j.Created != n || j.Replaced != 0 || j.Detail == "" {
					t.Errorf("status of the resumed import: %+v", j)
				}
				out, _, _ := runBin(t, bin, cfg, "status")
				if !strings.Contains(out, "import-1") || !strings.Contains(out, "finished") {
					t.Errorf("status does not tell the import's outcome:\n%s", out)
				}
			} else {
				st := statusJSON(t, cfg)
				if len(st.Imports) != 1 || st.Imports[0].State != api.ImportInterrupted || !st.NeedsAction {
					t.Errorf("status of an interrupted import before the next start: %+v (needs action %v)", st.Imports, st.NeedsAction)
				}
				one := filepath.Join(dir, "one.jsonl")
				os.WriteFile(one, []byte(grantLines("one", 1)), 0o600)
				out, errOut, err := runBin(t, bin, cfg, "grants", "import", one)
				if err != nil || !strings.Contains(out, "imported 1 grant") || !strings.Contains(errOut, "import finished after a restart") {
					t.Fatalf("the next import: %v\n%s%s", err, out, errOut)
				}
			}
			gs, err := listGrants(t, bin, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := n
			if mode == "local" {
				want++ // and the next import's
			}
			if len(gs) != want {
				t.Errorf("%d grants after the resumed import, want %d", len(gs), want)
			}
			for i := range n {
				g, ok := gs[fmt.Sprintf("c-%d", i)]
				if !ok || g.TokenGen != 1 {
					t.Fatalf("grant c-%d: present %v, token generation %d: want every line imported exactly once", i, ok, g.TokenGen)
				}
			}
			if s := spools(t, dir); len(s) != 0 {
				t.Errorf("spools after the import was finished: %v", s)
			}
			if mode == "daemon" {
				if !strings.Contains(logs.String(), "import finished after a restart") {
					t.Errorf("the daemon's log does not tell the import was finished:\n%s", logs.String())
				}
				stopDaemon()
			}
		})
	}
}
