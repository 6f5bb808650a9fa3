package testutil

import (
	"net"
	"testing"
)

// FreeAddr is an address on 127.0.0.1 nothing listens on, for a listener
// whose address must be known before it starts (daemon.listen named in
// store.advertise_url or reconnect.public_url).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
