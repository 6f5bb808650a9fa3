package daemon

import (
	"testing"
	"time"
)

func TestLeases(t *testing.T) {
	l := newLeases()
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	until := t0.Add(time.Minute)
	if !l.take(1, t0, until) {
		t.Fatal("a free row was not taken")
	}
	if l.take(1, t0.Add(59*time.Second), until) {
		t.Error("a leased row was taken again before its lease ran out")
	}
	if !l.take(2, t0, until) {
		t.Error("another row was not taken")
	}
	l.end(1)
	if !l.take(1, t0, until) {
		t.Error("an ended lease still holds its row")
	}
	// A lease never ended runs out: a probe that never reported back does
	// not keep its grant from being probed again.
	if !l.take(2, until, until.Add(time.Minute)) {
		t.Error("a lease that ran out still holds its row")
	}
	if n := len(l.m); n != 2 {
		t.Errorf("%d leases kept, want 2", n)
	}
}

// TestLeasesEndedDuringScanNotTaken: a due scan reads a snapshot; a lease
// that ends while it runs (its result stored meanwhile, perhaps with a
// rotated token) must not be taken by that scan, with the snapshot's
// token, but by the next one.
func TestLeasesEndedDuringScanNotTaken(t *testing.T) {
	l := newLeases()
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	until := t0.Add(time.Minute)
	l.take(1, t0, until)
	l.beginScan()
	l.end(1) // the writer stores the result of row 1's probe
	if l.take(1, t0, until) {
		t.Error("a lease ended during the scan was taken by it")
	}
	if !l.take(2, t0, until) {
		t.Error("a free row was not taken during a scan")
	}
	l.endScan()
	l.beginScan()
	if !l.take(1, t0, until) {
		t.Error("the next scan did not take the row")
	}
	l.endScan()
}
