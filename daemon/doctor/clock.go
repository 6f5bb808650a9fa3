package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
)

// clock checks this host's clock: one NTP query when servers are configured,
// else the running daemon's estimate from providers' Date headers.
func (d *doctor) clock(ctx context.Context, cfg *config.Config, st *api.Status) Check {
	c := Check{Name: "clock"}
	cc := cfg.Clock
	judge := func(off time.Duration, how string) {
		dir := "ahead"
		if off < 0 {
			dir = "behind"
		}
		abs := absDuration(off)
		c.Detail = fmt.Sprintf("this host's clock is %s %s (%s)", abs.Round(time.Millisecond), dir, how)
		if abs < time.Millisecond {
			c.Detail = fmt.Sprintf("this host's clock is within 1ms (%s)", how)
		}
		switch {
		case abs > cc.MaxOffset:
			c.Status = CheckFail
			c.Detail += fmt.Sprintf(": skewed, beyond clock.max_offset %s; providers refuse refreshes and invalid_grant answers are held", cc.MaxOffset)
			c.Fix = "sync this host's clock (timedatectl status; chronyc tracking or systemctl restart systemd-timesyncd) and check that its NTP service runs"
		case abs > cc.WarnOffset:
			c.Status = CheckWarn
			c.Detail += fmt.Sprintf(", beyond clock.warn_offset %s", cc.WarnOffset)
			c.Fix = "check this host's NTP service (timedatectl status, chronyc tracking) before the offset grows past clock.max_offset"
		default:
			c.Status = CheckOK
		}
	}
	if len(cc.Servers) > 0 {
		qctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		r := d.opts.NTPQuery(qctx, cc.Servers)
		cancel()
		if !r.OK {
			c.Status = CheckWarn
			c.Detail = fmt.Sprintf("no NTP server answered (%s)", strings.Join(cc.Servers, ", "))
			for _, s := range r.Samples {
				if s.Err != nil {
					c.Detail += fmt.Sprintf(": %v", s.Err)
					break
				}
			}
			c.Fix = "UDP port 123 to these servers may be blocked: allow it, list an internal NTP server in clock.servers, or set clock.servers = [] to rely on providers' Date headers"
			return c
		}
		judge(r.Offset, fmt.Sprintf("NTP, %d of %d server(s) answered", r.Servers, len(cc.Servers)))
		return c
	}
	if st != nil && st.Clock.Source != "" {
		judge(time.Duration(st.Clock.OffsetSeconds*float64(time.Second)),
			fmt.Sprintf("the daemon's estimate from %s, %d sample(s)", st.Clock.Source, st.Clock.DateSamples))
		return c
	}
	c.Status = CheckWarn
	c.Detail = "not checked: clock.servers is empty"
	if st != nil {
		c.Detail += " and the daemon has no Date-header estimate yet"
	} else {
		c.Detail += " and no daemon runs to estimate it from providers' Date headers"
	}
	c.Fix = "list reachable NTP servers in clock.servers (an internal one if UDP 123 is blocked), or run doctor again while the daemon runs"
	return c
}
