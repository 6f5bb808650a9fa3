package daemon

import (
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

const (
	sdReady     = sd.SdNotifyReady
	sdStopping  = sd.SdNotifyStopping
	sdReloading = sd.SdNotifyReloading
)

// sdNotify tells systemd about a state change; outside systemd
// ($NOTIFY_SOCKET unset) it does nothing.
func sdNotify(state string) { _, _ = sd.SdNotify(false, state) }

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
