package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/testutil"
)

// TestSystemdNotify listens on a fake $NOTIFY_SOCKET and checks what the
// daemon tells systemd: READY=1 once serving, WATCHDOG=1 from the scheduler
// loop at half of WatchdogSec, RELOADING=1 … READY=1 around a reload, and
// STOPPING=1 on shutdown.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
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
	messages := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(got, " ")
	}
	t.Setenv("NOTIFY_SOCKET", sock)
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
