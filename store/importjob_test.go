package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// jobLines are the grants of input lines from+1 … from+n: line i imports
// grant j<i mod 30>, so lines past 30 replace earlier grants.
func jobLines(from, n int) []NewGrant {
	var gs []NewGrant
	for i := from + 1; i <= from+n; i++ {
		gs = append(gs, NewGrant{ID: fmt.Sprintf("j%02d", i%30), Provider: "google", RefreshToken: secret.Secret("line-" + strconv.Itoa(i))})
	}
	return gs
}

func TestImportJob(t *testing.T) {
	db := openTest(t, Options{})
	started := t0.Add(-time.Minute)
	job, err := db.BeginImport(ImportJob{Source: "grants.jsonl", Spool: "/var/lib/grantwatch/import-spool", Total: 45, StartedAt: started, Committed: 99})
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != "import-1" || job.Committed != 0 || !job.StartedAt.Equal(started) {
		t.Fatalf("BeginImport = %+v", job)
	}
	for _, b := range []struct{ from, lines, grants, wantCreated, wantReplaced int }{
		// 20 lines, 20 new grants.
		{0, 20, 20, 20, 0},
		// 20 lines of which 2 are blank: 18 grants, 10 new, 8 replaced.
		{20, 20, 18, 30, 8},
		{40, 5, 5, 30, 13},
	} {
		job, err = db.ImportBatch(job.ID, b.from, b.lines, jobLines(b.from, b.grants), t0, replaceAll)
		if err != nil {
			t.Fatalf("batch at %d: %v", b.from, err)
		}
		if job.Committed != b.from+b.lines || job.Created != b.wantCreated || job.Replaced != b.wantReplaced || !job.UpdatedAt.Equal(t0) {
			t.Errorf("after the batch at %d: %+v", b.from, job)
		}
		if jobs, err := db.PendingImports(); err != nil || len(jobs) != 1 || jobs[0] != job {
			t.Errorf("PendingImports = %+v, %v; want the job as returned", jobs, err)
		}
	}
	if l, _ := db.GetLease("j13"); l.Token != "line-43" {
		t.Errorf("j13 has the token of %s, want line-43", l.Token)
	}
	assertIndexesMatchScan(t, db)
	if _, err := db.FinishImport(job.ID); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := db.PendingImports(); len(jobs) != 0 {
		t.Errorf("PendingImports after FinishImport = %+v", jobs)
	}
	if _, err := db.ImportBatch(job.ID, 45, 1, jobLines(45, 1), t0, replaceAll); !errors.Is(err, ErrNotFound) {
		t.Errorf("a batch of a finished job: %v, want ErrNotFound", err)
	}
}

// TestImportBatchRefuses: a batch sent again, one that skips lines, one past
// the total and one Import refuses write nothing, grants or progress.
func TestImportBatchRefuses(t *testing.T) {
	db := openTest(t, Options{})
	job, _ := db.BeginImport(ImportJob{Total: 30})
	job, err := db.ImportBatch(job.ID, 0, 10, jobLines(0, 10), t0, replaceAll)
	if err != nil {
		t.Fatal(err)
	}
	bad := jobLines(10, 10)
	bad[3].Provider = ""
	for _, b := range []struct {
		name        string
		from, lines int
		gs          []NewGrant
		want        error
	}{
		{"sent again", 0, 10, jobLines(0, 10), ErrImportOffset},
		{"lines skipped", 15, 10, jobLines(15, 10), ErrImportOffset},
		{"past the total", 10, 21, jobLines(10, 21), nil},
		{"a bad grant", 10, 10, bad, nil},
		{"fewer lines than grants", 10, 2, jobLines(10, 3), nil},
	} {
		t.Run(b.name, func(t *testing.T) {
			h, _ := db.History("j01")
			_, err := db.ImportBatch(job.ID, b.from, b.lines, b.gs, t0, replaceAll)
			if err == nil || (b.want != nil && !errors.Is(err, b.want)) || !strings.Contains(err.Error(), job.ID) {
				t.Errorf("ImportBatch = %v, want an error (%v) naming the job", err, b.want)
			}
			jobs, _ := db.PendingImports()
			if len(jobs) != 1 || jobs[0] != job {
				t.Errorf("the job moved: %+v", jobs)
			}
			if got := len(strings.Fields(grantIDs(t, db))); got != 10 {
				t.Errorf("%d grants, want 10", got)
			}
			if h2, _ := db.History("j01"); len(h2) != len(h) {
				t.Errorf("j01 got history from a refused batch")
			}
		})
	}
	if _, err := db.FinishImport(job.ID); err == nil || !strings.Contains(err.Error(), "10 of 30 lines") {
		t.Errorf("FinishImport of an unfinished job = %v", err)
	}
	if _, err := db.ImportBatch("import-99", 0, 1, jobLines(0, 1), t0, replaceAll); !errors.Is(err, ErrNotFound) {
		t.Errorf("ImportBatch of no job = %v, want ErrNotFound", err)
	}
}

// TestPendingImports: jobs are listed oldest first; an aborted job's record
// goes, its committed grants stay.
func TestPendingImports(t *testing.T) {
	db := openTest(t, Options{})
	var ids []string
	for i := range 11 {
		j, err := db.BeginImport(ImportJob{Source: fmt.Sprint(i), Total: 5, StartedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	jobs, _ := db.PendingImports()
	var got []string
	for _, j := range jobs {
		got = append(got, j.ID)
	}
	if strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Errorf("PendingImports = %v, want %v", got, ids)
	}
	if _, err := db.ImportBatch(ids[10], 0, 3, jobLines(0, 3), t0, replaceAll); err != nil {
		t.Fatal(err)
	}
	if j, err := db.AbortImport(ids[10]); err != nil || j.Committed != 3 {
		t.Errorf("AbortImport = %+v, %v", j, err)
	}
	if jobs, _ := db.PendingImports(); len(jobs) != 10 {
		t.Errorf("%d jobs after the abort, want 10", len(jobs))
	}
	if got := grantIDs(t, db); got != "j01 j02 j03" {
		t.Errorf("grants after the abort: %s, want the committed lines'", got)
	}
}

// TestImportJobProgressAfterKill: a process importing in batches is killed
// (SIGKILL, at whatever point it reached: between batches or inside a
// commit); the reopened database's job says exactly which lines landed.
func TestImportJobProgressAfterKill(t *testing.T) {
	if os.Getenv("GRANTWATCH_IMPORT_CHILD") != "" {
		importChild(os.Getenv("GRANTWATCH_IMPORT_CHILD"))
		return
	}
	path := filepath.Join(t.TempDir(), "g.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestImportJobProgressAfterKill$")
	cmd.Env = append(os.Environ(), "GRANTWATCH_IMPORT_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for n := 0; n < 5 && sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "committed") {
			n++
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	db := openAt(t, path, Options{})
	jobs, err := db.PendingImports()
	if err != nil || len(jobs) != 1 {
		t.Fatalf("PendingImports = %+v, %v", jobs, err)
	}
	job := jobs[0]
	if job.Committed < 5*7 {
		t.Fatalf("job says %d lines committed; the child reported five batches of 7", job.Committed)
	}
	// Line i's grant is c<i>: exactly lines 1…Committed are stored.
	n := 0
	db.Each(func(g Grant) error { n++; return nil })
	if n != job.Committed || job.Created != n {
		t.Errorf("the job says %d lines (%d created), the database holds %d grants", job.Committed, job.Created, n)
	}
	for _, i := range []int{1, job.Committed} {
		if _, err := db.Get(fmt.Sprintf("c%06d", i)); err != nil {
			t.Errorf("line %d's grant: %v", i, err)
		}
	}
	assertIndexesMatchScan(t, db)
	// The import goes on where the job stands.
	if _, err := db.ImportBatch(job.ID, job.Committed, 1, []NewGrant{childLine(job.Committed + 1)}, t0, replaceAll); err != nil {
		t.Errorf("resuming: %v", err)
	}
}

func childLine(i int) NewGrant {
	return NewGrant{ID: fmt.Sprintf("c%06d", i), Provider: "google", RefreshToken: "t"}
}

// importChild imports batches of 7 lines into path for ever, saying after
// each commit how far it got.
func importChild(path string) {
	db, err := Open(path, Options{Key: testKey})
	if err != nil {
		panic(err)
	}
	job, err := db.BeginImport(ImportJob{Source: "child"})
	if err != nil {
		panic(err)
	}
	for {
		var gs []NewGrant
		for i := job.Committed + 1; i <= job.Committed+7; i++ {
			gs = append(gs, childLine(i))
		}
		if job, err = db.ImportBatch(job.ID, job.Committed, 7, gs, t0, replaceAll); err != nil {
			panic(err)
		}
		fmt.Println("committed", job.Committed)
	}
}
