package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/internal/testutil"
	"github.com/grantwatch/grantwatch/store"
)

// crashedImport leaves d's database as a process killed mid-import leaves
// it: a spool of n lines (one blank line among them) beside the database, a
// job naming it, and the first batch lines committed. It returns the job.
func crashedImport(t *testing.T, d *Daemon, n, committed int) store.ImportJob {
	t.Helper()
	var b strings.Builder
	var first []store.NewGrant
	for i := range n {
		if i == 3 {
			b.WriteString("\n") // a blank line counts as a line
			continue
		}
		fmt.Fprintf(&b, `{"id":"r-%d","provider":"acme","refresh_token":"rt-%d"}`+"\n", i, i)
		if i < committed {
			first = append(first, store.NewGrant{ID: fmt.Sprintf("r-%d", i), Provider: "acme", RefreshToken: "rt-x"})
		}
	}
	f, err := os.CreateTemp(filepath.Dir(d.db.Path()), spoolPattern(d.db.Path()))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(b.String())
	f.Close()
	job, err := d.db.BeginImport(store.ImportJob{Source: "fleet.jsonl", Spool: f.Name(), Total: n})
	if err != nil {
		t.Fatal(err)
	}
	if job, err = d.db.ImportBatch(job.ID, 0, committed, first, time.Now(), store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	return job
}

// TestResumeImportsFinishesFromTheSpool: an interrupted import is finished
// from the line after the last committed batch (the committed lines are not
// imported again), its spool is removed, and status tells what happened; a
// spool no job names (a crash while the input was read) is removed.
func TestResumeImportsFinishesFromTheSpool(t *testing.T) {
	_, d := apiClient(t)
	job := crashedImport(t, d, 25, 10)
	orphan := filepath.Join(filepath.Dir(d.db.Path()), "."+filepath.Base(d.db.Path())+".import-orphan")
	os.WriteFile(orphan, []byte("{}\n"), 0o600)
	other := filepath.Join(filepath.Dir(d.db.Path()), ".other.db.import-1") // another database's
	os.WriteFile(other, []byte("{}\n"), 0o600)

	st, err := d.Status()
	if err != nil || len(st.Imports) != 1 || st.Imports[0].State != api.ImportInterrupted || !st.NeedsAction {
		t.Fatalf("status before the resume: %v %+v (needs action %v)", err, st.Imports, st.NeedsAction)
	}
	if err := d.ResumeImports(context.Background()); err != nil {
		t.Fatal(err)
	}
	gs := grantsByID(t, d.db)
	if len(gs) != 24 {
		t.Errorf("%d grants, want the 24 lines with a grant", len(gs))
	}
	for id, g := range gs {
		if g.TokenGen != 1 {
			t.Errorf("%s: token generation %d: imported more than once", id, g.TokenGen)
		}
	}
	if _, err := os.Stat(job.Spool); err == nil {
		t.Error("the spool of the finished import is still there")
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Error("a spool no job names is still there")
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another database's spool was removed: %v", err)
	}
	st, err = d.Status()
	if err != nil || len(st.Imports) != 1 {
		t.Fatalf("status after the resume: %v %+v", err, st.Imports)
	}
	j := st.Imports[0]
	if j.State != api.ImportFinished || j.Lines != 25 || j.Committed != 25 || j.Created != 24 || j.Source != "fleet.jsonl" ||
		!strings.Contains(j.Detail, "interrupted after line 10 of 25; lines 11 to 25 imported") || st.NeedsAction {
		t.Errorf("status after the resume: %+v (needs action %v)", j, st.NeedsAction)
	}
	if jobs, _ := d.db.PendingImports(); len(jobs) != 0 {
		t.Errorf("jobs left pending: %+v", jobs)
	}

	// An import that ends normally is the news from then on.
	c := InProcess(d, false)
	defer c.Close()
	if _, err := c.Import(context.Background(), strings.NewReader(`{"id":"n","provider":"acme","refresh_token":"t"}`), api.ImportOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.Status(); len(st.Imports) != 0 {
		t.Errorf("status after a normal import: %+v", st.Imports)
	}
}

// TestResumeImportsStopsWithoutItsSpool: a job whose spool is gone cannot be
// finished; it is ended where it stood, logged as an error, and status says
// so (and needs action) until an import ends normally.
func TestResumeImportsStopsWithoutItsSpool(t *testing.T) {
	logs := &testutil.LogBuffer{}
	cfg := testConfig(t, t.TempDir(), `
[[providers]]
name = "acme"
preset = "google"
client_id = "x"
`)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	job := crashedImport(t, d, 25, 10)
	os.Remove(job.Spool)
	if err := d.ResumeImports(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := d.Status()
	if err != nil || len(st.Imports) != 1 {
		t.Fatalf("status: %v %+v", err, st.Imports)
	}
	j := st.Imports[0]
	if j.State != api.ImportStopped || j.Committed != 10 || !strings.Contains(j.Detail, "lines 1 to 10 are imported, the rest are not") || !st.NeedsAction {
		t.Errorf("status: %+v (needs action %v)", j, st.NeedsAction)
	}
	if n := len(grantsByID(t, d.db)); n != 9 {
		t.Errorf("%d grants, want the 9 of the 10 committed lines", n)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"import a crash interrupted could not be finished"`) {
		t.Errorf("no error logged:\n%s", logs.String())
	}
}

// TestImportStatusWhileWriting: status shows an import as it is written.
func TestImportStatusWhileWriting(t *testing.T) {
	old := importProgressEvery
	importProgressEvery = time.Millisecond
	defer func() { importProgressEvery = old }()
	c, d := apiClient(t)
	var b strings.Builder
	for i := range 3 * importBatch {
		fmt.Fprintf(&b, `{"id":"w-%d","provider":"acme","refresh_token":"t-%d"}`+"\n", i, i)
	}
	var seen []api.ImportJob
	_, err := c.Import(context.Background(), strings.NewReader(b.String()), api.ImportOptions{Source: "big.jsonl"}, func(p api.ImportProgress) {
		if p.Phase == "writing" && seen == nil {
			st, err := d.Status()
			if err != nil {
				t.Error(err)
			}
			seen = st.Imports
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].State != api.ImportWriting || seen[0].Source != "big.jsonl" || seen[0].Lines != 3*importBatch || seen[0].Committed == 0 {
		t.Errorf("status while writing: %+v", seen)
	}
}

// TestBackupOutlastsServerTimeouts: a backup whose client stores it more
// slowly than the socket's write timeout completes whole: it extends its
// deadline as it streams.
func TestBackupOutlastsServerTimeouts(t *testing.T) {
	td, _ := tcpDaemon(t, "", func(d *Daemon) {
		d.timeouts.read, d.timeouts.write = 300*time.Millisecond, 300*time.Millisecond
	})
	c, err := api.DialSocket(context.Background(), td.cfg.Daemon.Socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&b, `{"id":"b-%d","provider":"acme","refresh_token":"rt-%d-%s"}`+"\n", i, i, strings.Repeat("x", 200))
	}
	if _, err := c.Import(context.Background(), strings.NewReader(b.String()), api.ImportOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	slow := &slowWriter{}
	n, err := c.Backup(context.Background(), slow)
	if err != nil || n < 1<<20 || int64(slow.n) != n {
		t.Fatalf("a backup slower than the write timeout: %d bytes (%d stored), %v", n, slow.n, err)
	}
}

// slowWriter takes 30 ms for each write: a client storing a backup on a
// slow disk.
type slowWriter struct{ n int }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(30 * time.Millisecond)
	w.n += len(p)
	return len(p), nil
}

// FuzzImportRoute sends arbitrary input to the control API's import route on
// a real daemon (spool, streaming check, batches; fsync off): the route
// always answers with a final line; a refused input writes nothing and its
// error quotes no refresh token; an accepted one stores what it counts; no
// job or spool is left behind either way.
func FuzzImportRoute(f *testing.F) {
	for _, s := range importSeeds {
		f.Add([]byte(s))
	}
	cfg := testConfig(f, f.TempDir(), `
[[providers]]
name = "google"
preset = "google"
client_id = "x"
`)
	d, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() })
	h := d.Handler()
	total := func(t *testing.T) int {
		counts, err := d.db.Counts()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range counts {
			for _, v := range m {
				n += v
			}
		}
		return n
	}
	// The route itself, without a transport: a fuzz run is 50,000 imports.
	importInput := func(b []byte) (api.ImportProgress, error) {
		rec := &duplexRecorder{httptest.NewRecorder()}
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/grants?source=fuzz", bytes.NewReader(b)))
		if rec.Code != http.StatusOK {
			return api.ImportProgress{}, fmt.Errorf("status %d: %s", rec.Code, rec.Body)
		}
		dec := json.NewDecoder(rec.Body)
		for {
			var p api.ImportProgress
			if err := dec.Decode(&p); err != nil {
				return p, fmt.Errorf("the answer ended before its final line: %w", err)
			}
			if p.Final && p.Error != "" {
				return p, errors.New(p.Error)
			}
			if p.Final {
				return p, nil
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Small inputs: an accepted one is written (sealed, committed), and
		// the parser's own target (FuzzParseImport) takes the large ones.
		if len(b) > 4<<10 {
			return
		}
		before := total(t)
		p, err := importInput(b)
		after := total(t)
		if err != nil {
			if after != before {
				t.Fatalf("a refused import changed the grants from %d to %d: %v", before, after, err)
			}
			if strings.Contains(err.Error(), "final line") || strings.Contains(err.Error(), "status ") || strings.Contains(err.Error(), "import stopped") {
				t.Fatalf("the route did not end its answer cleanly: %v", err)
			}
			checkQuotesNoToken(t, b, err, func(masked []byte) error { _, err := importInput(masked); return err })
		} else if p.Created+p.Replaced != p.Total || after != before+p.Created || p.Total == 0 {
			t.Fatalf("import answered %+v; the store went from %d to %d grants", p, before, after)
		}
		if jobs, err := d.db.PendingImports(); err != nil || len(jobs) != 0 {
			t.Fatalf("jobs left after the import: %+v %v", jobs, err)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(cfg.Daemon.DB), spoolPattern(cfg.Daemon.DB))); len(left) != 0 {
			t.Fatalf("spools left after the import: %v", left)
		}
	})
}

// duplexRecorder is an httptest.ResponseRecorder that lets a handler enable
// full duplex, as the import route does (http.ResponseController finds the
// method).
type duplexRecorder struct{ *httptest.ResponseRecorder }

func (duplexRecorder) EnableFullDuplex() error { return nil }
