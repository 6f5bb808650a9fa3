package daemon

import (
	"strconv"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

const (
	sdReady    = sd.SdNotifyReady
	sdStopping = sd.SdNotifyStopping
)

// sdNotify tells systemd about a state change; outside systemd
// ($NOTIFY_SOCKET unset) it does nothing.
func sdNotify(state string) { _, _ = sd.SdNotify(false, state) }

// sdReloadingNow is RELOADING=1 with the CLOCK_MONOTONIC time systemd
// (v253 and later) matches it against the reload it started; without it,
// systemd may ignore the message and end `systemctl reload` early
// (OpenVoxProject/trapperkeeper#110).
func sdReloadingNow() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return sd.SdNotifyReloading
	}
	return sd.SdNotifyReloading + "\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1e3, 10)
}

// sdReloadStatus is the STATUS= line sent with READY=1 after a reload, so
// that `systemctl status` (and `systemctl reload`'s caller) sees a failed
// reload, not only the journal.
func sdReloadStatus(err error) string {
	if err == nil {
		return "STATUS=running; config reloaded"
	}
	var lines []string // one line: a config's problems are joined by newlines
	for l := range strings.Lines(err.Error()) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	msg := strings.Join(lines, "; ")
	if r := []rune(msg); len(r) > 400 {
		msg = string(r[:400]) + "…"
	}
	return "STATUS=config reload failed, the previous config stays in force: " + msg
}

// sdWatchdogEvery is how often the scheduler loop must prove it is alive:
// half of WatchdogSec, or 0 when systemd's watchdog is off.
func sdWatchdogEvery() time.Duration {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// sdWatchdog pets systemd's watchdog. It is called from the scheduler loop,
// never from a free-running timer, so a wedged scheduler gets restarted.
func sdWatchdog() { _, _ = sd.SdNotify(false, sd.SdNotifyWatchdog) }
