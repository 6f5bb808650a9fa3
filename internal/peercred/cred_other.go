//go:build !linux

package peercred

import (
	"errors"
	"fmt"
	"net"
	"runtime"
)

// Of returns the credentials of the process at the other end of c. Only
// Linux (SO_PEERCRED) is supported; elsewhere it returns an error wrapping
// errors.ErrUnsupported, so that Dial refuses rather than trusts.
func Of(c net.Conn) (Cred, error) {
	return Cred{}, fmt.Errorf("peer credentials on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
