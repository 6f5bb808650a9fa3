// Package fdlimit reports the process's open-file limit (RLIMIT_NOFILE), for
// the daemon's start-up log and doctor. It sets nothing: the Go standard
// library already raises the soft limit when the program starts (package
// syscall's init on every Unix, since Go 1.19, go.dev/issue/46279; in Go
// 1.26 to one below the hard limit, so that a later change by prlimit(1) can
// be told apart), and restores the original soft limit in the children it
// starts (receivers of kind exec), so they see what systemd gave the unit
// (LimitNOFILE=, 1024 soft by default). The hard limit is the ceiling to
// raise in the unit when the daemon runs out.
package fdlimit

import (
	"fmt"
	"syscall"
)

// OpenFiles returns the soft (enforced) and hard limits on open files.
func OpenFiles() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	return uint64(lim.Cur), uint64(lim.Max), nil
}
