package store

import (
	"context"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// Benchmarks for issue 7. The 10⁶ sizes take minutes of setup and a GB of
// disk; they run only with GRANTWATCH_BENCH_1M=1:
//
//	GRANTWATCH_BENCH_1M=1 go test -run '^$' -bench . -benchtime 2000x ./store/

func benchSizes() []int {
	sizes := []int{10_000, 100_000}
	if os.Getenv("GRANTWATCH_BENCH_1M") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	return sizes
}

var idSeed = maphash.MakeSeed()

// benchID spreads ids over the key space like UUIDs or e-mail addresses do,
// so inserts land all over the B+trees rather than appending.
func benchID(i int) string {
	return fmt.Sprintf("%016x-%d", maphash.Comparable(idSeed, i), i)
}

// fillBench imports n grants of provider in chunks of 10,000, as the import
// command does.
func fillBench(tb testing.TB, db *DB, from, n int, provider string, now time.Time) {
	tb.Helper()
	benchChunks(from, n, provider, func(gs []NewGrant) {
		if _, _, err := db.Import(gs, now, replaceAll); err != nil {
			tb.Fatal(err)
		}
	})
}

// benchChunks calls fn with n grants of provider, numbered from from, in
// chunks of 10,000.
func benchChunks(from, n int, provider string, fn func([]NewGrant)) {
	const chunk = 10_000
	gs := make([]NewGrant, 0, chunk)
	for i := from; i < from+n; i++ {
		gs = append(gs, NewGrant{ID: benchID(i), Provider: provider, Subject: "user" + strconv.Itoa(i) + "@example.com",
			RefreshToken: secret.Secret("1//0g-refresh-token-" + strconv.Itoa(i) + "-abcdefghijklmnopqrstuvwxyz0123456789")})
		if len(gs) == chunk || i == from+n-1 {
			fn(gs)
			gs = gs[:0]
		}
	}
}

// BenchmarkDue measures one scheduler tick that finds 100 due grants among
// N scheduled in the future: its cost should not depend on N.
func BenchmarkDue(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			db := openTest(b, Options{NoSync: true})
			const hot = 100
			fillBench(b, db, 0, n-hot, "cold", t0.Add(1000*time.Hour)) // due far later
			fillBench(b, db, n-hot, hot, "hot", t0)
			b.ReportAllocs()
			for b.Loop() {
				ls, err := db.Due(t0, 0, nil)
				if err != nil || len(ls) != hot {
					b.Fatalf("Due = %d, %v; want %d", len(ls), err, hot)
				}
			}
		})
	}
}

// BenchmarkNextDue is the idle tick: nothing due among N grants.
func BenchmarkNextDue(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			db := openTest(b, Options{NoSync: true})
			fillBench(b, db, 0, n, "cold", t0.Add(time.Hour))
			b.ReportAllocs()
			for b.Loop() {
				if ls, err := db.Due(t0, 0, nil); err != nil || len(ls) != 0 {
					b.Fatalf("Due = %d, %v", len(ls), err)
				}
			}
		})
	}
}

// BenchmarkApplyParallel measures probe results written by 64 concurrent
// workers through Batch with MaxBatchSize 64, as the daemon runs them; with
// and without fsync.
func BenchmarkApplyParallel(b *testing.B) {
	for _, noSync := range []bool{true, false} {
		b.Run(fmt.Sprintf("nosync=%v", noSync), func(b *testing.B) {
			const n, workers = 100_000, 64
			db := openTest(b, Options{NoSync: noSync, MaxBatchSize: workers})
			fillBench(b, db, 0, n, "google", t0)
			var next atomic.Int64
			b.SetParallelism((workers + 1) / 2) // × GOMAXPROCS(2 here) goroutines
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1))
					due := t0.Add(24*time.Hour + time.Duration(i)*time.Millisecond)
					err := db.Apply(benchID(i%n), func(cur Grant) (Change, error) {
						cur.State, cur.LastProbeAt, cur.LastSuccessAt, cur.NextDueAt = StateHealthy, t0, t0, due
						return Change{Grant: cur}, nil
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "applies/s")
		})
	}
}

// BenchmarkImport imports N grants into a fresh database in chunks of
// 10,000, with fsync, as `grants import` does. Issue 7: 10⁶ under 60 s.
func BenchmarkImport(b *testing.B) {
	benchImport(b, func(db *DB, n int) { fillBench(b, db, 0, n, "google", t0) })
}

// BenchmarkImportBatch is BenchmarkImport through a resumable import job:
// each chunk is an ImportBatch, committed with the job's progress.
func BenchmarkImportBatch(b *testing.B) {
	benchImport(b, func(db *DB, n int) {
		job, err := db.BeginImport(ImportJob{Source: "bench", Total: n})
		if err != nil {
			b.Fatal(err)
		}
		benchChunks(0, n, "google", func(gs []NewGrant) {
			if job, err = db.ImportBatch(job.ID, job.Committed, len(gs), gs, t0, replaceAll); err != nil {
				b.Fatal(err)
			}
		})
		if _, err := db.FinishImport(job.ID); err != nil {
			b.Fatal(err)
		}
	})
}

// benchImport times fill(db, n) of a fresh database for each size.
func benchImport(b *testing.B, fill func(db *DB, n int)) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			i := 0
			for b.Loop() {
				db := openAt(b, filepath.Join(dir, fmt.Sprintf("%d.db", i)), Options{})
				i++
				start := time.Now()
				fill(db, n)
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "grants/s")
				db.Close()
				fi, _ := os.Stat(db.Path())
				b.ReportMetric(float64(fi.Size())/(1<<20), "MB")
				os.Remove(db.Path())
			}
		})
	}
}

// fillProbed is fillBench followed by one probe round: every grant healthy,
// due a day later, with a second history entry, as a fleet looks in use.
func fillProbed(tb testing.TB, db *DB, n int) {
	tb.Helper()
	fillBench(tb, db, 0, n, "google", t0)
	const chunk = 10_000
	items := make([]ApplyItem, 0, chunk)
	for i := range n {
		due := t0.Add(24*time.Hour + time.Duration(i)*time.Millisecond)
		items = append(items, ApplyItem{ID: benchID(i), Fn: func(cur Grant) (Change, error) {
			from := cur.State
			cur.State, cur.LastProbeAt, cur.LastSuccessAt, cur.NextDueAt = StateHealthy, t0, t0, due
			return Change{Grant: cur, History: &HistoryEntry{At: t0, From: from, To: StateHealthy}}, nil
		}})
		if len(items) == chunk || i == n-1 {
			if _, err := db.ApplyAll(items); err != nil {
				tb.Fatal(err)
			}
			items = items[:0]
		}
	}
}

// BenchmarkCheck measures Check on a probed fleet of 200,000 grants (and
// 10⁶ with GRANTWATCH_BENCH_1M=1), and each phase: pages (a write
// transaction: writers wait) and records (a read transaction).
//
//	go test -run '^$' -bench Check -benchtime 3x ./store/
func BenchmarkCheck(b *testing.B) {
	sizes := []int{200_000}
	if os.Getenv("GRANTWATCH_BENCH_1M") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			db := openTest(b, Options{NoSync: true})
			fillProbed(b, db, n)
			fi, _ := os.Stat(db.Path())
			var pages, records time.Duration
			for b.Loop() {
				var p problems
				start := time.Now()
				if err := db.checkPages(&p); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := db.checkRecords(context.Background(), &p); err != nil {
					b.Fatal(err)
				}
				pages, records = pages+mid.Sub(start), records+time.Since(mid)
				if err := p.err(db.Path()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(pages.Milliseconds())/float64(b.N), "pages-ms")
			b.ReportMetric(float64(records.Milliseconds())/float64(b.N), "records-ms")
			b.ReportMetric(float64(fi.Size())/(1<<20), "MB")
		})
	}
}

// BenchmarkRekey measures Rekey of a probed fleet of 200,000 grants, and
// its last transaction (the check of every token's key tag and the canary
// swap), which holds the write lock.
//
//	go test -run '^$' -bench Rekey -benchtime 2x ./store/
func BenchmarkRekey(b *testing.B) {
	const n = 200_000
	db := openTest(b, Options{NoSync: true})
	fillProbed(b, db, n)
	keys := [][]byte{otherKey, testKey}
	var last time.Duration
	i := 0
	for b.Loop() {
		var lastProgress time.Time
		if err := db.Rekey(keys[i%2], func(done, total int) { lastProgress = time.Now() }); err != nil {
			b.Fatal(err)
		}
		last += time.Since(lastProgress)
		i++
	}
	b.ReportMetric(float64(last.Milliseconds())/float64(b.N), "last-tx-ms")
}
