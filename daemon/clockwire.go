package daemon

import (
	"fmt"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/probes"
	"github.com/grantwatch/grantwatch/store"
)

// metaClockState keeps the last announced clock state across restarts, so a
// restart does not announce a skew on-call already heard about.
const metaClockState = "clock.announced"

// clockEvent is the event a clock snapshot announces: clock.skewed while
// skewed, clock.ok otherwise.
func (d *Daemon) clockEvent(s ClockSnapshot) *notify.Event {
	cv := &notify.Clock{State: string(s.State), OffsetSeconds: s.Offset.Seconds(), Source: s.Source}
	if s.State == ClockSkewed {
		return &notify.Event{
			ID: eventID(notify.TypeClockSkewed, "clock", s.ChangedAt), Type: notify.TypeClockSkewed,
			OccurredAt: d.now(), Clock: cv,
			Summary: fmt.Sprintf("this host's clock is off by %+.1fs (by %s): invalid_grant verdicts are held", s.Offset.Seconds(), s.Source),
			Fix:     probes.CauseClockSkew.Fix(),
		}
	}
	return &notify.Event{
		ID: eventID(notify.TypeClockOK, "clock", d.now()), Type: notify.TypeClockOK,
		OccurredAt: d.now(), Clock: cv,
		Summary: "this host's clock is good again; held grants are probed now",
	}
}

// onClockChange announces a skew once, and its end once, and releases the
// grants held for clock_skew so they are probed within one tick.
func (d *Daemon) onClockChange(from, to ClockSnapshot) {
	if !d.leads() {
		return // the leader announces (and announces on election what it finds)
	}
	// The announced state is read on every change, not only on changes to
	// or from skewed: after a restart while skewed the checker starts at
	// unknown, so the end of that skew is a change from unknown.
	skewed := to.State == ClockSkewed
	announced, err := d.db.GetMeta(metaClockState)
	if err != nil {
		d.log.Error("read clock state", tint.Err(err))
	}
	wasSkewed := string(announced) == string(ClockSkewed)
	if !skewed && !wasSkewed && from.State != ClockSkewed {
		return
	}
	if skewed != wasSkewed {
		ev := d.clockEvent(to)
		if err := d.db.Enqueue(d.router.Entries(*ev)...); err != nil {
			d.log.Error("queue clock notification", tint.Err(err), "type", ev.Type)
		} else {
			d.disp.Kick()
		}
		state := "ok"
		if skewed {
			state = string(ClockSkewed)
		}
		if err := d.db.PutMeta(metaClockState, []byte(state)); err != nil {
			d.log.Error("store clock state", tint.Err(err))
		}
	}
	if !skewed {
		n, err := d.db.Reschedule(d.now(), store.StateOnHold, "", string(probes.CauseClockSkew))
		if err != nil {
			d.log.Error("release grants held for clock skew", tint.Err(err))
			return
		}
		if n > 0 {
			d.log.Info("grants held for clock skew are probed again", "grants", n)
			d.Kick()
		}
	}
}
