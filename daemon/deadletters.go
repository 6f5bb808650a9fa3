package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/grantwatch/grantwatch/daemon/notify"
	"github.com/grantwatch/grantwatch/store"
)

// DeadLetter is a notification its receiver did not accept within max_age
// (`grantwatch notify dead`). The JSON names are part of grantwatch's
// interface.
type DeadLetter struct {
	Receiver       string    `json:"receiver"`
	Seq            uint64    `json:"seq"`
	NotificationID string    `json:"notification_id,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	DeadAt         time.Time `json:"dead_at"`
	Attempts       int       `json:"attempts"`
	// Reason says why: max_age and the last delivery error (redacted as
	// the log is).
	Reason string       `json:"reason"`
	Event  notify.Event `json:"event"`
}

// RedeliverResult is what `grantwatch notify redeliver` did.
type RedeliverResult struct {
	Requeued int `json:"requeued"`
	// Stale counts dead letters left alone because what they report has
	// changed since (the grant reconnected, the provider recovered):
	// sending them would reopen at the receiver what is resolved.
	Stale int `json:"stale"`
}

func (d *Daemon) handleDead(w http.ResponseWriter, r *http.Request) {
	out := []DeadLetter{}
	err := d.db.DeadLetters(func(e store.OutboxEntry) error {
		dl := DeadLetter{Receiver: e.Receiver, Seq: e.Seq, NotificationID: e.NotificationID,
			CreatedAt: e.CreatedAt, DeadAt: e.DeadAt, Attempts: e.Attempts, Reason: e.DeadReason}
		if err := json.Unmarshal(e.Payload, &dl.Event); err != nil {
			return fmt.Errorf("dead letter %d of %s: decode its event: %w", e.Seq, e.Receiver, err)
		}
		out = append(out, dl)
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleRedeliver puts dead letters back in the outbox: those of receiver
// (every configured receiver if none is given), only the seqs given if any,
// and only those whose news still holds (current). A receiver that is no
// longer configured is refused: nothing would send its entries.
func (d *Daemon) handleRedeliver(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	receiver := q.Get("receiver")
	var seqs []uint64
	for _, s := range q["seq"] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			writeErr(w, clientError{fmt.Errorf("seq %q: want a dead letter's number, as `grantwatch notify dead` shows it", s)})
			return
		}
		seqs = append(seqs, n)
	}
	var names []string
	for _, c := range d.Config().Notify {
		names = append(names, c.Name)
	}
	switch {
	case receiver == "" && len(seqs) > 0:
		writeErr(w, clientError{fmt.Errorf("a dead letter's seq needs its receiver")})
		return
	case receiver != "" && !slices.Contains(names, receiver):
		writeErr(w, clientError{fmt.Errorf("no [[notify]] entry named %q in the daemon's config: its dead letters cannot be sent", receiver)})
		return
	case receiver != "":
		names = []string{receiver}
	}
	// Choose first (reads), then move: the store's write transaction does
	// not wait on the grant lookups.
	type candidate struct {
		receiver string
		seq      uint64
		event    notify.Event
		decoded  bool
	}
	var cands []candidate
	err := d.db.DeadLetters(func(e store.OutboxEntry) error {
		if !slices.Contains(names, e.Receiver) || len(seqs) > 0 && !slices.Contains(seqs, e.Seq) {
			return nil
		}
		c := candidate{receiver: e.Receiver, seq: e.Seq}
		c.decoded = json.Unmarshal(e.Payload, &c.event) == nil
		cands = append(cands, c)
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	res := RedeliverResult{}
	send := map[string][]uint64{}
	for _, c := range cands {
		if c.decoded && d.current(c.event) {
			send[c.receiver] = append(send[c.receiver], c.seq)
		} else {
			res.Stale++
		}
	}
	for name, ss := range send {
		n, err := d.db.Redeliver(name, ss, d.now())
		if err != nil {
			writeErr(w, err)
			return
		}
		res.Requeued += n
	}
	if res.Requeued > 0 {
		d.disp.Kick()
	}
	writeJSON(w, http.StatusOK, res)
}

// current reports whether what ev reports still holds: its grant, provider
// or clock is in the state it announced.
func (d *Daemon) current(ev notify.Event) bool {
	switch {
	case ev.Grant != nil:
		g, err := d.db.Get(ev.Grant.ID)
		return err == nil && string(g.State) == ev.Grant.State
	case ev.Provider != nil:
		for _, p := range d.providerStates() {
			if p.Name == ev.Provider.Name {
				return p.State == ev.Provider.State
			}
		}
		return false
	case ev.Clock != nil:
		return string(d.clock.Snapshot().State) == ev.Clock.State
	}
	return true
}

// DeadLetters lists the notifications no receiver accepted within max_age.
func (c *Client) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var out []DeadLetter
	err := c.do(ctx, http.MethodGet, "/v1/notify/dead", nil, &out)
	return out, err
}

// Redeliver puts dead letters back in the outbox: receiver's ("" for every
// configured receiver), only seqs if any are given.
func (c *Client) Redeliver(ctx context.Context, receiver string, seqs []uint64) (RedeliverResult, error) {
	q := url.Values{}
	if receiver != "" {
		q.Set("receiver", receiver)
	}
	for _, s := range seqs {
		q.Add("seq", strconv.FormatUint(s, 10))
	}
	var out RedeliverResult
	err := c.do(ctx, http.MethodPost, "/v1/notify/dead/redeliver?"+q.Encode(), nil, &out)
	return out, err
}
