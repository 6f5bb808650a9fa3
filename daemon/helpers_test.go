package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/probes/sandbox"
	"github.com/grantwatch/grantwatch/store"
)

// testDaemon is a daemon running in-process against the sandbox.
type testDaemon struct {
	t      *testing.T
	sb     *sandbox.Server
	cfg    *config.Config
	d      *Daemon
	logs   *testutil.LogBuffer
	cancel context.CancelFunc
	done   chan error
	dir    string
}

// testConfig is a config for fast tests: one-second intervals, short
// backoffs and timeouts, NTP off, the given providers' TOML appended.
func testConfig(t testing.TB, dir, extra string) *config.Config {
	t.Helper()
	toml := fmt.Sprintf(`
[daemon]
db = %q
socket = %q
listen = ""
tick = "@every 1s"
workers = 16
probe_timeout = "500ms"
backoff_min = "20ms"
backoff_max = "300ms"
degraded_after = 3
shutdown_timeout = "2s"

[log]
level = "debug"
format = "json"

[clock]
servers = []
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.sock")) + extra
	path := filepath.Join(dir, "grantwatch.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func sandboxProvider(name, preset string, sb *sandbox.Server) string {
	return fmt.Sprintf(`
[[providers]]
name = %q
preset = %q
token_url = %q
client_id = "test-client"
client_secret = "test-client-secret-DO-NOT-LOG"
auth_style = "params"
interval = "1s"
`, name, preset, sb.TokenURL())
}

// startDaemon opens and runs a daemon on cfg; it is stopped at cleanup.
func startDaemon(t *testing.T, cfg *config.Config, logs *testutil.LogBuffer, mod func(*Options)) *testDaemon {
	t.Helper()
	return runDaemon(t, openDaemon(t, cfg, logs, mod), logs)
}

// openDaemon opens a daemon on cfg that logs to logs, for runDaemon.
func openDaemon(t *testing.T, cfg *config.Config, logs *testutil.LogBuffer, mod func(*Options)) *Daemon {
	t.Helper()
	opts := Options{
		Config:     cfg,
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ConfigPath: cfg.Path(),
	}
	if mod != nil {
		mod(&opts)
	}
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runDaemon runs an opened daemon (a test may change it between Open and
// Run); it is stopped at cleanup.
func runDaemon(t *testing.T, d *Daemon, logs *testutil.LogBuffer) *testDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	td := &testDaemon{t: t, cfg: d.Config(), d: d, logs: logs, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() { td.done <- d.Run(ctx, func(*Daemon) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-td.done:
		t.Fatalf("daemon stopped at start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not ready within 10s")
	}
	t.Cleanup(td.stop)
	return td
}

func (td *testDaemon) stop() {
	if td.cancel == nil {
		return
	}
	td.cancel()
	td.cancel = nil
	select {
	case err := <-td.done:
		if err != nil {
			td.t.Errorf("daemon Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		td.t.Error("daemon did not stop within 15s")
	}
}

// grantsByID reads every grant from the daemon's store.
func grantsByID(t *testing.T, db store.Store) map[string]store.Grant {
	t.Helper()
	m := map[string]store.Grant{}
	if err := db.Each(func(g store.Grant) error { m[g.ID] = g; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// importLines imports JSON Lines of grants through the same parser as
// `grants import`, checking providers against cfg.
func importLines(t *testing.T, cfg *config.Config, lines []string) {
	t.Helper()
	gs, err := ParseImport(strings.NewReader(strings.Join(lines, "\n")), cfg.Provider)
	if err != nil {
		t.Fatal(err)
	}
	db, err := OpenStore(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, _, err := db.Import(gs, time.Now(), store.ImportOptions{Replace: true, Force: true}); err != nil {
		t.Fatal(err)
	}
}

// apiClient is the control API in-process on a daemon opened (not run) on a
// temporary database with one provider, acme.
func apiClient(t *testing.T) (*api.Client, *Daemon) {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), `
[[providers]]
name = "acme"
preset = "google"
client_id = "x"
`)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := InProcess(d, true)
	t.Cleanup(func() { c.Close() })
	return c, d
}
