package probes

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/beevik/ntp"
)

// Sign convention of every offset in this file: an offset is this host's
// clock minus the reference clock (an NTP server, a provider). Positive means
// our clock is ahead, negative that it is behind. This is the opposite of
// ntp.Response.ClockOffset, which is what to add to the local clock.

// ClockQueryTimeout bounds one NTP query when the context has no deadline.
const ClockQueryTimeout = 5 * time.Second

// ClockSample is one NTP server's answer to QueryClock.
type ClockSample struct {
	// Server is the address as configured (host or host:port).
	Server string
	// Offset is this host's clock minus the server's: positive when our
	// clock is ahead. Zero when Err is set.
	Offset time.Duration
	// RTT is the round trip of the query; the offset's error is at most
	// half of it (plus the server's own root distance).
	RTT time.Duration
	// Err says why the sample does not count: no answer (timeout, DNS,
	// ICMP unreachable) or an answer that failed ntp's Response.Validate
	// (kiss of death, unsynchronized server, …). It wraps the ntp sentinel
	// (ntp.ErrKissOfDeath, …) or the network error.
	Err error
}

// ClockReading is the result of querying a set of NTP servers.
type ClockReading struct {
	// Offset is the median of the valid samples' offsets (positive: our
	// clock is ahead); zero when OK is false.
	Offset time.Duration
	// Servers is how many servers answered with a valid response.
	Servers int
	// Samples holds one entry per queried server, in the order given.
	Samples []ClockSample
	// OK reports that at least one server answered validly, so Offset is a
	// measurement and not a default.
	OK bool
}

// QueryClock asks every server for the time, concurrently, and combines the
// valid answers by their median offset, so a single wrong server among three
// cannot move the result. A server is "host" (port 123) or "host:port";
// IPv6 literals as "[::1]:123".
//
// ntp has no context: each query's timeout is the time left until ctx's
// deadline (ClockQueryTimeout without one), name resolution honours ctx, and
// cancelling ctx closes the sockets so QueryClock returns promptly. An empty
// servers list returns a reading with OK false and no samples.
func QueryClock(ctx context.Context, servers []string) ClockReading {
	r := ClockReading{Samples: make([]ClockSample, len(servers))}
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { r.Samples[i] = queryClockServer(ctx, s) })
	}
	wg.Wait()

	offsets := make([]time.Duration, 0, len(servers))
	for _, s := range r.Samples {
		if s.Err == nil {
			offsets = append(offsets, s.Offset)
		}
	}
	r.Servers = len(offsets)
	r.OK = r.Servers > 0
	if r.OK {
		r.Offset = medianDuration(offsets)
	}
	return r
}

func queryClockServer(ctx context.Context, server string) ClockSample {
	sample := ClockSample{Server: server}
	timeout := ClockQueryTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := ctx.Err(); err != nil || timeout <= 0 {
		if err == nil {
			err = context.DeadlineExceeded
		}
		sample.Err = fmt.Errorf("query ntp server %s: %w", server, err)
		return sample
	}
	// Dial with ctx so that name resolution is bounded by it too, and close
	// the socket when ctx ends so that a blocked read returns. The dialer
	// returns the *net.UDPConn itself: ntp reads kernel receive timestamps
	// only from that type.
	var stop func() bool
	opts := ntp.QueryOptions{
		Timeout: timeout,
		Dialer: func(_, remote string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "udp", remote)
			if err != nil {
				return nil, err
			}
			stop = context.AfterFunc(ctx, func() { c.Close() })
			return c, nil
		},
	}
	resp, err := ntp.QueryWithOptions(server, opts)
	if stop != nil {
		stop()
	}
	if err != nil {
		if ctx.Err() != nil {
			// The read failed because the socket was closed under it;
			// the cause is the context.
			err = ctx.Err()
		}
		sample.Err = fmt.Errorf("query ntp server %s: %w", server, err)
		return sample
	}
	sample.RTT = resp.RTT
	if err := resp.Validate(); err != nil {
		if resp.IsKissOfDeath() {
			err = fmt.Errorf("%w (kiss code %q)", err, resp.KissCode)
		}
		sample.Err = fmt.Errorf("ntp server %s: invalid answer: %w", server, err)
		return sample
	}
	sample.Offset = -resp.ClockOffset
	return sample
}

// DateOffset estimates this host's clock minus a provider's clock from the
// Date header of one of its answers: positive when our clock is ahead.
//
// sent is when the request was sent and latency the full round trip, both by
// this host's clock. The provider stamped Date while handling the request,
// taken as the middle of the round trip (sent + latency/2, i.e. half the
// round trip is subtracted from the receive time). Date has one-second
// resolution and is truncated, so the provider's clock then read
// date + 0.5s on average; the estimate is accurate to about ±0.5s plus
// half the round trip, and a single sample should not be trusted alone.
// date must not be zero (an absent or unparsable header is no sample).
func DateOffset(date time.Time, sent time.Time, latency time.Duration) time.Duration {
	local := sent.Add(latency / 2)
	provider := date.Add(500 * time.Millisecond)
	return local.Sub(provider)
}

// medianDuration returns the median of ds, the mean of the two middle values
// for an even count. It reorders ds.
func medianDuration(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return ds[n/2-1] + (ds[n/2]-ds[n/2-1])/2
}
