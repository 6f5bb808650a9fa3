package main

import (
	"os"
	"runtime/debug"
)

// daemonGOGC is the garbage collector's target for the commands that run the
// daemon (run, bench). The daemon's live heap is small (10–30 MB at 10⁶
// grants) while a full round allocates ~15 KB a probe, so at Go's default
// of 100 it collects several times a second; at 200 it collects half as
// often, for ~10 % less CPU a probe, and its heap stays under three times
// the live one (~60 MB in a full round over 10⁶ grants, ~10 MB idle).
const daemonGOGC = 200

// tuneGC applies daemonGOGC unless the operator chose with GOGC.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(daemonGOGC)
	}
}
