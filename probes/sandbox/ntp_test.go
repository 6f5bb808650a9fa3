package sandbox

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func startNTP(t *testing.T) *NTPServer {
	t.Helper()
	s, err := StartNTP()
	if err != nil {
		t.Fatalf("StartNTP: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func queryNTP(t *testing.T, s *NTPServer, timeout time.Duration) (*ntp.Response, error) {
	t.Helper()
	return ntp.QueryWithOptions(s.Addr(), ntp.QueryOptions{Timeout: timeout})
}

func TestNTPServerAddr(t *testing.T) {
	s := startNTP(t)
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:<port>", s.Addr())
	}
}

func TestNTPServerAnswersValidPackets(t *testing.T) {
	for _, offset := range []time.Duration{0, 5 * time.Minute, -5 * time.Minute, 90 * time.Second, 48 * time.Hour} {
		t.Run(offset.String(), func(t *testing.T) {
			s := startNTP(t)
			s.SetOffset(offset)
			r, err := queryNTP(t, s, 2*time.Second)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			// ntp's ClockOffset is what to add to our clock: the server's
			// offset itself.
			// NTP cannot see how the round trip splits: the offset is
			// exact to half of it (large on a loaded machine).
			if d, tol := (r.ClockOffset - offset).Abs(), r.RTT/2+time.Millisecond; d > tol {
				t.Errorf("ClockOffset = %v, want %v ± %v", r.ClockOffset, offset, tol)
			}
			if r.Stratum != 2 || r.Leap != ntp.LeapNoWarning || r.Version != 4 {
				t.Errorf("stratum %d leap %d version %d, want 2, 0, 4", r.Stratum, r.Leap, r.Version)
			}
			if r.RootDelay > 10*time.Millisecond || r.RootDispersion > 10*time.Millisecond {
				t.Errorf("root delay %v dispersion %v, want small", r.RootDelay, r.RootDispersion)
			}
			if r.ReferenceString() != "127.0.0.1" {
				t.Errorf("reference id %s, want 127.0.0.1", r.ReferenceString())
			}
			if s.Queries() != 1 {
				t.Errorf("Queries() = %d, want 1", s.Queries())
			}
		})
	}
}

func TestNTPServerVersion3(t *testing.T) {
	s := startNTP(t)
	r, err := ntp.QueryWithOptions(s.Addr(), ntp.QueryOptions{Timeout: 2 * time.Second, Version: 3})
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if r.Version != 3 {
		t.Errorf("version %d, want 3 (echoed)", r.Version)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

func TestNTPServerDown(t *testing.T) {
	s := startNTP(t)
	s.SetDown(true)
	_, err := queryNTP(t, s, 100*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("query while down: err = %v, want a timeout", err)
	}
	if s.Queries() != 1 {
		t.Errorf("Queries() = %d, want 1 (dropped packets count)", s.Queries())
	}
	s.SetDown(false)
	if _, err := queryNTP(t, s, 2*time.Second); err != nil {
		t.Fatalf("query after up: %v", err)
	}
}

func TestNTPServerFaults(t *testing.T) {
	tests := []struct {
		fault NTPFault
		want  error
	}{
		{NTPKissOfDeath, ntp.ErrKissOfDeath},
		{NTPUnsynchronized, ntp.ErrInvalidLeapSecond},
		{NTPNoFault, nil},
	}
	for _, tt := range tests {
		s := startNTP(t)
		s.SetFault(tt.fault)
		r, err := queryNTP(t, s, 2*time.Second)
		if err != nil {
			t.Fatalf("fault %d: query: %v", tt.fault, err)
		}
		if got := r.Validate(); !errors.Is(got, tt.want) {
			t.Errorf("fault %d: Validate() = %v, want %v", tt.fault, got, tt.want)
		}
		if tt.fault == NTPKissOfDeath && r.KissCode != "RATE" {
			t.Errorf("kiss code %q, want RATE", r.KissCode)
		}
	}
}

// TestNTPServerIgnoresNonClientPackets: a packet that is not an NTPv3/v4
// client request (here a server-mode packet, and a short one) gets no
// answer, and the server keeps serving.
func TestNTPServerIgnoresNonClientPackets(t *testing.T) {
	s := startNTP(t)
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server := make([]byte, ntpPacketSize)
	server[0] = 4<<3 | 4
	for _, p := range [][]byte{server, []byte("short")} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(make([]byte, 512)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %d, %v; want no answer", n, err)
	}
	if _, err := queryNTP(t, s, 2*time.Second); err != nil {
		t.Fatalf("query after junk: %v", err)
	}
}

func TestNTPServerClose(t *testing.T) {
	s, err := StartNTP()
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := ntp.QueryWithOptions(addr, ntp.QueryOptions{Timeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("query after Close succeeded")
	}
}

func TestNTPTimestamp(t *testing.T) {
	tests := []struct {
		t    time.Time
		want uint64
	}{
		{time.Unix(0, 0), uint64(ntpUnixEpoch) << 32},
		{time.Unix(1, 500_000_000), uint64(ntpUnixEpoch+1)<<32 | 1<<31},
		// 2036-02-07T06:28:16Z is the end of NTP era 0: seconds wrap to 0.
		{time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC), 0},
	}
	for _, tt := range tests {
		if got := ntpTimestamp(tt.t); got != tt.want {
			t.Errorf("ntpTimestamp(%v) = %#x, want %#x", tt.t, got, tt.want)
		}
	}
}
