package sandbox

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// NTPFault makes the NTP server answer with a packet a client must reject.
type NTPFault int32

// The faults. Each is rejected by github.com/beevik/ntp's Response.Validate.
const (
	// NTPNoFault answers well-formed, synchronized NTPv4 packets.
	NTPNoFault NTPFault = iota
	// NTPKissOfDeath answers stratum 0 with kiss code "RATE", a server
	// telling the client to go away (RFC 5905 §7.4).
	NTPKissOfDeath
	// NTPUnsynchronized answers leap indicator 3 (alarm): the server has no
	// time source.
	NTPUnsynchronized
)

// NTPServer is a loopback UDP NTP server whose clock can be set off from this
// host's by a chosen offset, for tests and the demo (no packet ever leaves
// 127.0.0.1). It answers NTPv3/NTPv4 client packets as a stratum 2 server.
// Its methods are safe for concurrent use.
type NTPServer struct {
	conn    *net.UDPConn
	offset  atomic.Int64 // time.Duration
	down    atomic.Bool
	fault   atomic.Int32 // NTPFault
	queries atomic.Int64
	done    sync.WaitGroup
}

// StartNTP starts an NTP server on 127.0.0.1 on a free port, answering with
// this host's time (offset 0) until told otherwise.
func StartNTP() (*NTPServer, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	s := &NTPServer{conn: conn}
	s.done.Go(s.serve)
	return s, nil
}

// Addr is the server's address, "127.0.0.1:port", as a clock.servers entry.
func (s *NTPServer) Addr() string { return s.conn.LocalAddr().String() }

// SetOffset sets the server's clock to this host's clock plus d. A client on
// this host then measures its own clock as off by -d: with d = +5m the
// client is 5 minutes behind.
func (s *NTPServer) SetOffset(d time.Duration) { s.offset.Store(int64(d)) }

// SetDown makes the server drop every packet (down = true), as a firewall
// blocking UDP 123 would, or answer again (false).
func (s *NTPServer) SetDown(down bool) { s.down.Store(down) }

// SetFault makes the server answer with an invalid packet; NTPNoFault
// restores good answers.
func (s *NTPServer) SetFault(f NTPFault) { s.fault.Store(int32(f)) }

// Queries counts the client packets received, dropped ones included.
func (s *NTPServer) Queries() int { return int(s.queries.Load()) }

// Close stops the server and waits for it to finish.
func (s *NTPServer) Close() error {
	err := s.conn.Close()
	s.done.Wait()
	return err
}

const (
	ntpPacketSize = 48
	// ntpUnixEpoch is 1970-01-01 in seconds since the NTP epoch 1900-01-01.
	ntpUnixEpoch = 2_208_988_800
)

func (s *NTPServer) serve() {
	buf := make([]byte, 512)
	for {
		n, peer, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		received := time.Now()
		s.queries.Add(1)
		if s.down.Load() || n < ntpPacketSize {
			continue
		}
		req := buf[:n]
		mode := req[0] & 0x07
		version := (req[0] >> 3) & 0x07
		if mode != 3 || version < 3 || version > 4 {
			continue // only NTPv3/v4 client requests
		}
		resp := s.answer(req, received)
		_, _ = s.conn.WriteToUDP(resp[:], peer)
	}
}

// answer builds the server packet (RFC 5905 §7.3) for the client request
// req, received at received by this host's clock.
func (s *NTPServer) answer(req []byte, received time.Time) [ntpPacketSize]byte {
	var p [ntpPacketSize]byte
	offset := time.Duration(s.offset.Load())
	leap, stratum := byte(0), byte(2)
	refID := uint32(127<<24 | 1) // the upstream server, 127.0.0.1
	switch NTPFault(s.fault.Load()) {
	case NTPKissOfDeath:
		stratum = 0
		refID = binary.BigEndian.Uint32([]byte("RATE"))
	case NTPUnsynchronized:
		leap = 3
	}
	version := (req[0] >> 3) & 0x07
	p[0] = leap<<6 | version<<3 | 4 // mode 4: server
	p[1] = stratum
	p[2] = req[2] // poll: echo the client's
	p[3] = 0xec   // precision: 2^-20 s, about 1µs
	// Root delay and dispersion: 2^-8 s (~4ms) each, as a nearby stratum 2.
	binary.BigEndian.PutUint32(p[4:], 1<<8)
	binary.BigEndian.PutUint32(p[8:], 1<<8)
	binary.BigEndian.PutUint32(p[12:], refID)
	binary.BigEndian.PutUint64(p[16:], ntpTimestamp(received.Add(offset-time.Minute))) // reference: synced a minute ago
	copy(p[24:32], req[40:48])                                                         // origin: the client's transmit time
	binary.BigEndian.PutUint64(p[32:], ntpTimestamp(received.Add(offset)))
	binary.BigEndian.PutUint64(p[40:], ntpTimestamp(time.Now().Add(offset)))
	return p
}

// ntpTimestamp encodes t as a 64-bit NTP timestamp (32.32 fixed point
// seconds since 1900); the seconds wrap in 2036, which clients resolve.
func ntpTimestamp(t time.Time) uint64 {
	sec := uint64(t.Unix()+ntpUnixEpoch) & 0xffffffff
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return sec<<32 | frac
}
