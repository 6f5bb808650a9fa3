package daemon

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/testutil"
)

// notifySocket listens on a fake $NOTIFY_SOCKET and returns what the
// daemon sent so far, one message after the other.
func notifySocket(t *testing.T, dir string) (messages func() string) {
	t.Helper()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(buf[:n]))
			mu.Unlock()
		}
	}()
	t.Setenv("NOTIFY_SOCKET", sock)
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(got, " ")
	}
}

// TestSystemdNotify listens on a fake $NOTIFY_SOCKET and checks what the
// daemon tells systemd: READY=1 once serving, WATCHDOG=1 from the scheduler
// loop at half of WatchdogSec, RELOADING=1 … READY=1 around a reload, and
// STOPPING=1 on shutdown.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	messages := notifySocket(t, dir)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")
	os.Unsetenv("WATCHDOG_PID")

	sb := testutil.Sandbox(t)
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb))
	cfg.Daemon.Tick = "@every 1h" // the watchdog must not depend on ticks
	reload := make(chan struct{}, 1)
	td := startDaemon(t, cfg, &testutil.LogBuffer{}, func(o *Options) { o.Reload = reload })
	testutil.WaitFor(t, 5*time.Second, "READY=1", func() bool { return strings.Contains(messages(), "READY=1") })
	testutil.WaitFor(t, 5*time.Second, "3 WATCHDOG=1", func() bool { return strings.Count(messages(), "WATCHDOG=1") >= 3 })
	reload <- struct{}{}
	testutil.WaitFor(t, 5*time.Second, "RELOADING=1 then READY=1", func() bool {
		m := messages()
		i := strings.Index(m, "RELOADING=1")
		return i >= 0 && strings.Contains(m[i:], "READY=1")
	})
	td.stop()
	testutil.WaitFor(t, 5*time.Second, "STOPPING=1", func() bool { return strings.Contains(messages(), "STOPPING=1") })
}

// TestSystemdReloadStatus: `systemctl reload` and `systemctl status` see
// how a reload went. RELOADING=1 carries the MONOTONIC_USEC= systemd 253+
// matches it by; the READY=1 that ends it carries a STATUS= line: the
// error of a failed reload (one line, naming the key), and an ok status
// once a reload succeeds. Before, systemd saw READY=1 either way.
func TestSystemdReloadStatus(t *testing.T) {
	dir := t.TempDir()
	messages := notifySocket(t, dir)
	sb := testutil.Sandbox(t)
	cfg := testConfig(t, dir, sandboxProvider("acme", "", sb))
	reload := make(chan struct{}, 1)
	logs := &testutil.LogBuffer{}
	td := startDaemon(t, cfg, logs, func(o *Options) { o.Reload = reload })
	good, err := os.ReadFile(cfg.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Path(), []byte("[daemon]\nworkers = \"many\"\ntick = \"often\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The READY=1 that ended the last reload (WATCHDOG=1 comes between).
	readyAfterReload := func() string {
		m := messages()
		i := strings.LastIndex(m, "RELOADING=1\nMONOTONIC_USEC=")
		if i < 0 {
			return ""
		}
		j := strings.Index(m[i:], "READY=1")
		if j < 0 {
			return ""
		}
		ready, _, _ := strings.Cut(m[i+j:], " WATCHDOG=1")
		return ready
	}
	td.reload(reload)
	failed := regexp.MustCompile(`^READY=1\nSTATUS=config reload failed, the previous config stays in force: [^\n]*workers[^\n]*$`)
	testutil.WaitFor(t, 5*time.Second, "READY=1 with the reload error as STATUS=", func() bool { return failed.MatchString(readyAfterReload()) })

	if err := os.WriteFile(cfg.Path(), good, 0o600); err != nil {
		t.Fatal(err)
	}
	td.reload(reload)
	testutil.WaitFor(t, 5*time.Second, "READY=1 with an ok STATUS=", func() bool {
		return readyAfterReload() == "READY=1\nSTATUS=running; config reloaded"
	})
}
