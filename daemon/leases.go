package daemon

import (
	"sync"
	"time"

	"github.com/grantwatch/grantwatch/store"
)

// job is a due grant handed to the workers, leased until until.
type job struct {
	store.Lease
	until time.Time
}

// leases are the grants handed to the workers whose results are not stored
// yet: a due scan passes over them, so that no grant is handed out twice
// while it is probed. A lease ends when its result is committed (or the
// grant is moved: deferred, requeued) and otherwise runs out after
// Daemon.lease, so a probe that never reports back (a job dropped, a worker
// cut off) does not keep its grant from being probed again.
//
// Leases live in memory only. The store is never written to hand a grant
// out — a due scan is a read, with no write lock and no fsync — and a crash
// loses nothing: every grant is due where its last stored result put it.
type leases struct {
	mu sync.Mutex
	m  map[uint64]time.Time // row → end of its lease
	// ended holds the rows whose lease ended while a due scan ran: the
	// scan reads a snapshot from before their result was stored, with the
	// token that result may have replaced, so it must not take them; the
	// next scan reads the stored result.
	scanning bool
	ended    map[uint64]struct{}
}

func newLeases() *leases {
	return &leases{m: make(map[uint64]time.Time), ended: make(map[uint64]struct{})}
}

// end ends the lease of row, if any.
func (l *leases) end(row uint64) {
	l.mu.Lock()
	delete(l.m, row)
	if l.scanning {
		l.ended[row] = struct{}{}
	}
	l.mu.Unlock()
}

// beginScan is called before a due scan opens its read transaction, and
// endScan after it: take refuses meanwhile the rows whose lease ended.
func (l *leases) beginScan() {
	l.mu.Lock()
	l.scanning = true
	clear(l.ended)
	l.mu.Unlock()
}

func (l *leases) endScan() {
	l.mu.Lock()
	l.scanning = false
	clear(l.ended)
	l.mu.Unlock()
}

// take leases row until until unless it is leased at now (a lease that ran
// out counts as ended) or its lease ended during this scan, and reports
// whether it did.
func (l *leases) take(row uint64, now, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if end, ok := l.m[row]; ok && now.Before(end) {
		return false
	}
	if _, ok := l.ended[row]; ok {
		return false
	}
	l.m[row] = until
	return true
}

// holds reports whether row is still leased until until: false once the
// lease ended (its grant's result was stored) or ran out and was taken
// again.
func (l *leases) holds(row uint64, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	end, ok := l.m[row]
	return ok && end.Equal(until)
}

// endIf ends row's lease if it is still the one that runs until until (a
// job's own), not one handed out since.
func (l *leases) endIf(row uint64, until time.Time) {
	l.mu.Lock()
	if end, ok := l.m[row]; ok && end.Equal(until) {
		delete(l.m, row)
		if l.scanning {
			l.ended[row] = struct{}{}
		}
	}
	l.mu.Unlock()
}
