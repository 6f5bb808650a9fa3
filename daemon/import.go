package daemon

// The import pipeline. An import never holds its input: it is copied to a
// spool file beside the database while each line is checked (one streaming
// pass, importer.go), and only when every line is valid is an import job
// begun in the store and the spool written in batches, each batch's grants
// and the job's progress in one transaction (store.ImportBatch). A crash
// leaves the job and its spool behind: the next start (Run, or a CLI import
// that opens the database itself) finishes the import from the spool where
// the job stands, so every line is imported exactly once, or, when the spool
// is gone, ends the job and says how far it got. Status shows both.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/lmittmann/tint"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/atomicfile"
	"github.com/grantwatch/grantwatch/store"
)

// importBatch is how many grants one ImportBatch transaction writes.
const importBatch = 10_000

// importProgressEvery is how often an import reports its progress.
var importProgressEvery = 500 * time.Millisecond

// metaImportOutcome is the daemon meta key of the last interrupted import's
// outcome (an api.ImportJob, finished or stopped), shown by status until an
// import ends normally.
const metaImportOutcome = "import_outcome"

// spoolPattern names the spool files of the database at db (daemon.db):
// hidden, beside it, and named after it, so that two databases in one
// directory leave each other's spools alone.
func spoolPattern(db string) string { return "." + filepath.Base(db) + ".import-*" }

// errImportTooLarge is an input over daemon.import_max_bytes.
type errImportTooLarge struct{ max int64 }

func (e errImportTooLarge) Error() string {
	return fmt.Sprintf("nothing imported: the input is larger than daemon.import_max_bytes (%d bytes): split it and import the parts one by one, or raise the limit", e.max)
}

// capReader fails a read past max bytes.
type capReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, errImportTooLarge{c.max}
	}
	if rest := c.max + 1 - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errImportTooLarge{c.max}
	}
	return n, err
}

// importStream imports the JSON Lines read from r: spool and check, then
// write (see the file comment). Once every line is valid the import is
// written to its end even if the client goes away: it is one change.
func (d *Daemon) importStream(ctx context.Context, r io.Reader, opts api.ImportOptions, progress func(api.ImportProgress)) (api.ImportProgress, error) {
	cfg := d.Config()
	dir := filepath.Dir(cfg.Daemon.DB)
	f, err := os.CreateTemp(dir, spoolPattern(cfg.Daemon.DB))
	if err != nil {
		return api.ImportProgress{}, fmt.Errorf("nothing imported: create the import's spool file in %s: %w", dir, err)
	}
	spool := f.Name()
	// Not a crash's leftover: ResumeImports (at a start running beside this
	// import) leaves it alone.
	d.spools.Store(spool, struct{}{})
	defer d.spools.Delete(spool)
	keep := false
	defer func() {
		f.Close()
		if !keep {
			os.Remove(spool)
		}
	}()
	// CreateTemp makes it 0600; a umask cannot widen that.
	c := newLineChecker(cfg.Provider)
	lines, err := d.spoolAndCheck(ctx, &capReader{r: r, max: cfg.Daemon.ImportMaxBytes}, f, c, progress)
	if err != nil {
		return api.ImportProgress{Read: lines}, err
	}
	if cand := c.dupHashes(); cand != nil {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return api.ImportProgress{Read: lines}, fmt.Errorf("nothing imported: read the spool %s: %w", spool, err)
		}
		if err := c.duplicates(f, cand); err != nil {
			return api.ImportProgress{Read: lines}, fmt.Errorf("nothing imported: read the spool %s: %w", spool, err)
		}
	}
	if err := c.err(); err != nil {
		return api.ImportProgress{Read: lines}, err
	}
	if c.grants == 0 {
		return api.ImportProgress{Read: lines}, errors.New("nothing to import: the input has no grants")
	}
	// The job names the spool: both must survive a crash before the
	// first batch lands (unless fsync is off for a benchmark, as for the
	// store).
	if !d.opts.NoSync {
		if err := f.Sync(); err != nil {
			return api.ImportProgress{Read: lines}, fmt.Errorf("nothing imported: write the spool %s: %w", spool, err)
		}
		if err := atomicfile.SyncDir(dir); err != nil {
			return api.ImportProgress{Read: lines}, fmt.Errorf("nothing imported: %w", err)
		}
	}
	// What the input replaces is checked whole before its first batch is
	// written: a refusal writes nothing. Each batch checks again, for a
	// grant that rotated meanwhile.
	sopts := store.ImportOptions{Replace: opts.Replace, Force: opts.Force}
	conflicts, err := d.spoolConflicts(f, c)
	if err != nil {
		return api.ImportProgress{Read: lines}, fmt.Errorf("nothing imported: read the spool %s: %w", spool, err)
	}
	if err := conflicts.Refused(sopts); err != nil {
		return api.ImportProgress{Read: lines}, api.Invalid(importRefusal(err))
	}
	// The options first: a resumed batch replaces only what this import
	// may (a grant that rotates meanwhile is still refused without force).
	if err := d.putImportOpts(spool, sopts); err != nil {
		return api.ImportProgress{Read: lines}, fmt.Errorf("nothing imported: %w", err)
	}
	job, err := d.db.BeginImport(store.ImportJob{Source: opts.Source, Spool: spool, Total: lines, StartedAt: d.now().UTC()})
	if err != nil {
		d.putImportOpts(spool, nil)
		return api.ImportProgress{Read: lines}, fmt.Errorf("nothing imported: %w", err)
	}
	keep = true
	p, err := d.runImport(context.WithoutCancel(ctx), job, c.grants, sopts, progress, false)
	p.Rotated, p.RotatedIDs = conflicts.Rotated, conflicts.RotatedIDs
	return p, err
}

// spoolConflicts reads the spool's grants (valid, as c checked them) and
// returns what they would replace.
func (d *Daemon) spoolConflicts(f *os.File, c *lineChecker) (store.Conflicts, error) {
	var all store.Conflicts
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return all, err
	}
	sc := newLineScanner(f)
	batch := make([]store.NewGrant, 0, importBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		cs, err := d.db.ImportConflicts(batch)
		if err != nil {
			return err
		}
		all.Merge(cs)
		batch = batch[:0]
		return nil
	}
	check := newLineChecker(c.provider)
	for n := 1; sc.Scan(); n++ {
		if g, ok := check.check(n, sc.Bytes()); ok {
			batch = append(batch, g)
			if len(batch) == importBatch {
				if err := flush(); err != nil {
					return all, err
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return all, err
	}
	return all, flush()
}

// spoolAndCheck copies r to the spool while checking each line, reporting
// progress every importProgressEvery, and returns the number of lines.
func (d *Daemon) spoolAndCheck(ctx context.Context, r io.Reader, spool *os.File, c *lineChecker, progress func(api.ImportProgress)) (int, error) {
	var read atomic.Int64
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(importProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				progress(api.ImportProgress{Phase: "validating", Read: int(read.Load())})
			}
		}
	}()
	defer func() { close(stop); <-stopped }()

	w := &spoolWriter{f: spool, db: d.Config().Daemon.DB, buf: make([]byte, 0, 64<<10)}
	sc := newLineScanner(io.TeeReader(r, w))
	n := 0
	for sc.Scan() {
		n++
		if n > maxImportLines {
			return n, fmt.Errorf("nothing imported: the input has more than %d lines: split it and import the parts one by one", maxImportLines)
		}
		c.check(n, sc.Bytes())
		read.Store(int64(n))
		if n%4096 == 0 && ctx.Err() != nil {
			return n, fmt.Errorf("nothing imported: %w", ctx.Err())
		}
	}
	var tooLarge errImportTooLarge
	switch err := sc.Err(); {
	case errors.As(err, &tooLarge):
		return n, tooLarge
	case errors.Is(err, errSpool):
		return n, err
	case err != nil:
		return n, scanErr(err, n+1)
	}
	if err := w.Flush(); err != nil {
		return n, err
	}
	return n, nil
}

// errSpool marks a failed write of the spool.
var errSpool = errors.New("write the import's spool")

// spoolWriter buffers writes to the spool file and says, in an error, where
// it is: the disk of the database db may be full.
type spoolWriter struct {
	f   *os.File
	db  string
	buf []byte
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	if len(w.buf)+len(p) > cap(w.buf) {
		if err := w.Flush(); err != nil {
			return 0, err
		}
	}
	if len(p) > cap(w.buf) {
		if _, err := w.f.Write(p); err != nil {
			return 0, w.err(err)
		}
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *spoolWriter) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		return w.err(err)
	}
	return nil
}

func (w *spoolWriter) err(err error) error {
	return fmt.Errorf("nothing imported: %w beside %s (free space there, or import a smaller file): %w", errSpool, w.db, err)
}

// importOptsKey is the daemon meta key of the options an import job's
// batches are written with, by its spool: a resumed import replaces only
// what the import that began it was allowed to.
func importOptsKey(spool string) string { return "import_opts:" + filepath.Base(spool) }

// putImportOpts records (or, with nil, deletes) the options of the import
// spooled to spool.
func (d *Daemon) putImportOpts(spool string, opts any) error {
	var b []byte
	if opts != nil {
		b, _ = json.Marshal(opts)
	}
	return d.db.PutMeta(importOptsKey(spool), b)
}

// importOpts is what putImportOpts recorded for spool: none is the
// default, which replaces nothing.
func (d *Daemon) importOpts(spool string) store.ImportOptions {
	var opts store.ImportOptions
	if b, err := d.db.GetMeta(importOptsKey(spool)); err == nil && b != nil {
		json.Unmarshal(b, &opts)
	}
	return opts
}

// importRun is an import this process is writing, for status.
type importRun struct{ resumed bool }

// runImport writes job from its spool, from the line after job.Committed,
// in batches, and finishes it: the spool is removed and the job deleted.
// grants is the number of grants in the spool (0 if not known: a resumed
// import counts them as it goes). On an error the job is left as it stands
// (with its spool) when resumed, so that the next start tries again;
// otherwise it is aborted: the client is told how far it got.
func (d *Daemon) runImport(ctx context.Context, job store.ImportJob, grants int, opts store.ImportOptions, progress func(api.ImportProgress), resumed bool) (api.ImportProgress, error) {
	d.importing.Store(job.ID, importRun{resumed: resumed})
	defer d.importing.Delete(job.ID)
	p := api.ImportProgress{Phase: "writing", Job: job.ID, Total: grants, Read: job.Total,
		Done: job.Created + job.Replaced, Created: job.Created, Replaced: job.Replaced}
	job, err := d.writeSpool(ctx, job, opts, &p, progress)
	if err == nil {
		_, err = d.db.FinishImport(job.ID)
	}
	if err != nil {
		if resumed {
			return p, err
		}
		ended := fmt.Errorf("import stopped after line %d of %d (%d grants stored; the lines after %d are not imported: import them again): %w",
			job.Committed, job.Total, p.Done, job.Committed, err)
		if _, aerr := d.db.AbortImport(job.ID); aerr != nil {
			// The job stays, and its spool: the next start finishes it.
			return p, fmt.Errorf("import stopped after line %d of %d: %w; the daemon finishes it from its spool when it starts again", job.Committed, job.Total, err)
		}
		os.Remove(job.Spool)
		d.putImportOpts(job.Spool, nil)
		return p, ended
	}
	os.Remove(job.Spool)
	d.putImportOpts(job.Spool, nil)
	if !resumed {
		// The import that ended normally is the news now.
		if b, err := d.db.GetMeta(metaImportOutcome); err == nil && b != nil {
			if err := d.db.PutMeta(metaImportOutcome, nil); err != nil {
				d.log.Warn("clear the last interrupted import's outcome", tint.Err(err))
			}
		}
	}
	d.Kick()
	return p, nil
}

// writeSpool reads job's spool and writes its lines after job.Committed in
// batches of importBatch grants, updating p.
func (d *Daemon) writeSpool(ctx context.Context, job store.ImportJob, opts store.ImportOptions, p *api.ImportProgress, progress func(api.ImportProgress)) (store.ImportJob, error) {
	f, err := os.Open(job.Spool)
	if err != nil {
		return job, fmt.Errorf("open the import's spool: %w", err)
	}
	defer f.Close()
	// The providers were checked when the import began; one removed since
	// still takes its lines (their grants wait for it to come back).
	c := newLineChecker(func(name string) (config.ProviderConfig, bool) { pc, _ := d.Config().Provider(name); return pc, true })
	sc := newLineScanner(f)
	var (
		batch []store.NewGrant
		n     int // lines read
		from  = job.Committed
		last  = time.Now()
	)
	flush := func() error {
		if n == from {
			return nil
		}
		j, err := d.db.ImportBatch(job.ID, from, n-from, batch, d.now(), opts)
		d.tokens.invalidate() // replaced tokens (and labels) are read anew
		if err != nil {
			return err
		}
		job, from, batch = j, n, batch[:0]
		p.Created, p.Replaced = j.Created, j.Replaced
		p.Done = j.Created + j.Replaced
		p.Total = max(p.Total, p.Done)
		if progress != nil && time.Since(last) >= importProgressEvery {
			progress(*p)
			last = time.Now()
		}
		return nil
	}
	for sc.Scan() {
		n++
		if n <= from {
			continue
		}
		g, ok := c.check(n, sc.Bytes())
		c.hashes = c.hashes[:0] // no duplicate check: it was done
		if ok {
			batch = append(batch, g)
		} else if err := c.err(); err != nil {
			return job, fmt.Errorf("the spool %s no longer reads as it was checked: %w", job.Spool, err)
		}
		if len(batch) == importBatch {
			if err := flush(); err != nil {
				return job, err
			}
			if err := ctx.Err(); err != nil {
				return job, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return job, fmt.Errorf("read the import's spool %s: %w", job.Spool, err)
	}
	if n < job.Total {
		return job, fmt.Errorf("the spool %s holds %d lines, the import had %d: it was cut short", job.Spool, n, job.Total)
	}
	return job, flush()
}

// ResumeImports finishes the imports a crash interrupted (store import jobs
// left pending), each from its spool where its job stands, and removes
// spools no job names (a crash while an input was read). A job whose spool
// is gone or unreadable is ended where it stood; one that fails to write
// (the disk is full) is left for the next start. Each outcome is logged
// (WARN when finished, ERROR when not) and kept for status. Run calls it at
// start; so does Connect (an import) when it opens the database itself.
func (d *Daemon) ResumeImports(ctx context.Context) error {
	jobs, err := d.db.PendingImports()
	if err != nil {
		return err
	}
	named := map[string]bool{}
	for _, j := range jobs {
		named[j.Spool] = true
	}
	db := d.Config().Daemon.DB
	if stale, err := filepath.Glob(filepath.Join(filepath.Dir(db), spoolPattern(db))); err == nil {
		for _, s := range stale {
			if _, reading := d.spools.Load(s); !named[s] && !reading {
				os.Remove(s)
			}
		}
	}
	var errs []error
	for _, j := range jobs {
		if _, running := d.importing.Load(j.ID); running {
			continue
		}
		if _, err := os.Stat(j.Spool); err != nil && d.cluster != nil {
			// A shared store (etcd): the job's spool is on the disk of
			// the instance that runs it, or ran it. It is that one's
			// to finish; an operator ends one whose host is gone.
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		errs = append(errs, d.resumeImport(ctx, j))
	}
	return errors.Join(errs...)
}

func (d *Daemon) resumeImport(ctx context.Context, j store.ImportJob) error {
	log := d.log.With("import", j.ID, "source", j.Source)
	before := j.Committed
	log.Info("finishing an import a crash interrupted", "lines", j.Total, "committed", j.Committed)
	out := api.ImportJob{ID: j.ID, Source: j.Source, Lines: j.Total, StartedAt: j.StartedAt}
	var p api.ImportProgress
	_, statErr := os.Stat(j.Spool)
	err := statErr
	if err == nil {
		p, err = d.runImport(ctx, j, 0, d.importOpts(j.Spool), nil, true)
	}
	switch {
	case err == nil:
		out.State, out.Committed, out.Created, out.Replaced = api.ImportFinished, j.Total, p.Created, p.Replaced
		out.Detail = fmt.Sprintf("interrupted after line %d of %d; lines %d to %d imported from the spool at restart", before, j.Total, before+1, j.Total)
		log.Warn("import finished after a restart", "lines", j.Total, "committed_before", before, "created", p.Created, "replaced", p.Replaced)
	case statErr != nil || !store.IsWriteFailure(err) && ctx.Err() == nil:
		// Nothing can bring the rest back: end the job where it stands.
		ended, aerr := d.db.AbortImport(j.ID)
		if aerr != nil {
			return fmt.Errorf("import %s: %w; end it: %w", j.ID, err, aerr)
		}
		os.Remove(j.Spool)
		d.putImportOpts(j.Spool, nil)
		out.State, out.Committed, out.Created, out.Replaced = api.ImportStopped, ended.Committed, ended.Created, ended.Replaced
		why := err.Error()
		if statErr != nil {
			why = "its spool " + j.Spool + " is gone"
		}
		out.Detail = fmt.Sprintf("interrupted after line %d of %d and not finished (%s): lines 1 to %d are imported, the rest are not; import the file again",
			ended.Committed, j.Total, why, ended.Committed)
		log.Error("import a crash interrupted could not be finished", "committed", ended.Committed, "lines", j.Total, tint.Err(err),
			"fix", "import the file again (the lines already imported are only reset to pending)")
	default:
		log.Error("import a crash interrupted is not finished yet; the next start tries again", tint.Err(err))
		return fmt.Errorf("finish import %s: %w", j.ID, err)
	}
	out.EndedAt = d.now().UTC()
	b, _ := json.Marshal(out)
	if err := d.db.PutMeta(metaImportOutcome, b); err != nil {
		log.Warn("keep the import's outcome for status", tint.Err(err))
	}
	return nil
}

// importStatus lists the imports for status: pending jobs, and the outcome
// of the last interrupted one.
func (d *Daemon) importStatus() ([]api.ImportJob, error) {
	jobs, err := d.db.PendingImports()
	if err != nil {
		return nil, err
	}
	var out []api.ImportJob
	for _, j := range jobs {
		v := api.ImportJob{ID: j.ID, Source: j.Source, State: api.ImportInterrupted, Lines: j.Total,
			Committed: j.Committed, Created: j.Created, Replaced: j.Replaced, StartedAt: j.StartedAt}
		if r, ok := d.importing.Load(j.ID); ok {
			v.State = api.ImportWriting
			if r.(importRun).resumed {
				v.Detail = "interrupted by a crash, being finished from its spool"
			}
		} else {
			v.Detail = "the process writing it stopped: the daemon, or the next grants import with no daemon, finishes it from its spool when it starts"
		}
		out = append(out, v)
	}
	b, err := d.db.GetMeta(metaImportOutcome)
	if err != nil {
		return out, err
	}
	if b != nil {
		var v api.ImportJob
		if err := json.Unmarshal(b, &v); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}
