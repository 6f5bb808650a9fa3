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
}

func newLeases() *leases { return &leases{m: make(map[uint64]time.Time)} }

// end ends the lease of row, if any.
func (l *leases) end(row uint64) {
	l.mu.Lock()
	delete(l.m, row)
	l.mu.Unlock()
}

// take leases row until until unless it is leased at now (a lease that ran
// out counts as ended), and reports whether it did.
func (l *leases) take(row uint64, now, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if end, ok := l.m[row]; ok && now.Before(end) {
		return false
	}
	l.m[row] = until
	return true
}
