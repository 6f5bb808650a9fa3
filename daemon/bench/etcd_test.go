package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/etcdtest"
)

// BenchmarkEtcdRound is `grantwatch bench`'s full round with the etcd
// backend, on an embedded 3-member cluster on this machine (members,
// daemon and sandbox share its cores): 100,000 grants (GRANTWATCH_GRANTS
// overrides) imported, then every one probed. It reports the round's
// probes/s, the import's grants/s, the probes' p50 and p99, the bare
// client's rate in the same run and CPU per 1000 probes. One round takes
// about two minutes; .ci/run runs it once, without -race:
//
//	go test -run '^$' -bench '^BenchmarkEtcdRound$' -benchtime 1x ./daemon/bench/
func BenchmarkEtcdRound(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("GRANTWATCH_GRANTS")); err == nil && v > 0 {
		n = v
	}
	ec := etcdtest.Start(b, 3, etcdtest.Options{})
	round := 0
	for b.Loop() {
		round++
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		// Each round its own fleet (prefix) on the one cluster.
		r, err := Run(ctx, Options{Grants: n, Concurrency: 64, Dir: b.TempDir(), Store: etcdtest.StoreConfig(ec.Endpoints, fmt.Sprintf("/bench-%d/", round), "bench", 20*time.Second)})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.ProbesPerSec, "probes/s")
		b.ReportMetric(r.ImportPerSec, "imported/s")
		b.ReportMetric(r.P50Ms, "p50-ms")
		b.ReportMetric(r.P99Ms, "p99-ms")
		b.ReportMetric(r.CeilingPerSec, "bare-client/s")
		b.ReportMetric(r.CPUSPer1000, "cpu-s/1000-probes")
		b.Logf("etcd, 3 members: %d grants, import %.1fs (%.0f/s), round %.1fs: %.0f probes/s (bare client %.0f/s, ratio %.2f), p50 %.1f ms, p99 %.1f ms, CPU %.3fs per 1000, load %.1f",
			r.Grants, r.ImportS, r.ImportPerSec, r.DurationS, r.ProbesPerSec, r.CeilingPerSec, r.Ratio, r.P50Ms, r.P99Ms, r.CPUSPer1000, r.Load1)
	}
}
