package store

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// ImportJob is a resumable import's record. Its progress is written in the
// same transaction as the grants of each batch (ImportBatch), so after a
// crash Committed is exactly the number of input lines whose grants are
// stored: the import goes on at line Committed+1.
type ImportJob struct {
	// ID names the job ("import-1", …); BeginImport assigns it.
	ID string `json:"id"`
	// Source is where the input came from, for display (a path, "-").
	Source string `json:"source,omitempty"`
	// Spool is the file holding the input that a resumed import reads
	// again. The store only records it.
	Spool string `json:"spool,omitempty"`
	// Total is the number of input lines; 0 when not known.
	Total int `json:"total"`
	// Committed is the number of input lines, from the first, whose grants
	// are committed. Created and Replaced count those grants.
	Committed int `json:"committed"`
	Created   int `json:"created"`
	Replaced  int `json:"replaced"`
	// StartedAt is when the job began; UpdatedAt when its last batch was
	// committed.
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// BeginImport records a new import job and returns it with its ID. The
// store sets ID, Committed, Created, Replaced and UpdatedAt (what job holds
// there is ignored); a zero StartedAt becomes now.
func (db *DB) BeginImport(job ImportJob) (ImportJob, error) {
	if job.Total < 0 {
		return ImportJob{}, fmt.Errorf("begin import: total %d lines is negative", job.Total)
	}
	job.Committed, job.Created, job.Replaced, job.UpdatedAt = 0, 0, 0, time.Time{}
	if job.StartedAt.IsZero() {
		job.StartedAt = time.Now().UTC()
	}
	err := db.update(func(b *bkts) error {
		seq, err := b.imports.NextSequence()
		if err != nil {
			return err
		}
		job.ID = "import-" + strconv.FormatUint(seq, 10)
		return b.putImport(&job)
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("begin import in %s: %w", db.path, err)
	}
	return job, nil
}

// ImportBatch imports gs as Import does (with opts) and advances job id by lines input
// lines (those gs came from, blank ones included), in one transaction: the
// grants land together with the job's progress, or neither does. from is
// the number of lines the caller believes committed before this batch; when
// it is not the job's Committed, nothing is written and the error wraps
// ErrImportOffset. It returns the job as committed. A job that does not
// exist: ErrNotFound; gs that Import refuses: Import's error, nothing
// written.
func (db *DB) ImportBatch(id string, from, lines int, gs []NewGrant, now time.Time, opts ImportOptions) (ImportJob, error) {
	if lines < len(gs) || lines <= 0 {
		return ImportJob{}, fmt.Errorf("import batch of job %q: %d lines cannot hold %d grants", id, lines, len(gs))
	}
	if err := checkImport(gs); err != nil {
		return ImportJob{}, fmt.Errorf("import batch of job %q at line %d: %w", id, from+1, err)
	}
	var job ImportJob
	err := db.update(func(b *bkts) error {
		var err error
		if job, err = b.getImport(id); err != nil {
			return err
		}
		if from != job.Committed {
			return fmt.Errorf("%w: job %q has committed %d lines, the batch starts after %d", ErrImportOffset, id, job.Committed, from)
		}
		if job.Total > 0 && from+lines > job.Total {
			return fmt.Errorf("job %q: a batch of lines %d to %d goes past its %d lines", id, from+1, from+lines, job.Total)
		}
		created, replaced, err := db.importTx(b, gs, now, opts)
		if err != nil {
			return err
		}
		job.Committed += lines
		job.Created += created
		job.Replaced += replaced
		job.UpdatedAt = now
		return b.putImport(&job)
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("import into %s: %w", db.path, err)
	}
	return job, nil
}

// PendingImports returns the import jobs begun and neither finished nor
// aborted, oldest first: at start, the imports to resume.
func (db *DB) PendingImports() ([]ImportJob, error) {
	var jobs []ImportJob
	err := db.view(func(b *bkts) error {
		return b.imports.ForEach(func(k, v []byte) error {
			var j ImportJob
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("import job %q: %w", k, err)
			}
			jobs = append(jobs, j)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read import jobs in %s: %w", db.path, err)
	}
	slices.SortFunc(jobs, func(a, b ImportJob) int {
		return cmp.Or(a.StartedAt.Compare(b.StartedAt), cmp.Compare(len(a.ID), len(b.ID)), cmp.Compare(a.ID, b.ID))
	})
	return jobs, nil
}

// FinishImport deletes the record of a job whose lines are all committed
// and returns it as it ended. A job with lines left (Committed < Total) is
// refused: roll them forward, or abort it.
func (db *DB) FinishImport(id string) (ImportJob, error) {
	return db.endImport(id, true)
}

// AbortImport deletes the record of a job, whatever its progress, and
// returns it as it stood. The grants of its committed lines stay imported.
func (db *DB) AbortImport(id string) (ImportJob, error) {
	return db.endImport(id, false)
}

func (db *DB) endImport(id string, finish bool) (ImportJob, error) {
	var job ImportJob
	err := db.update(func(b *bkts) error {
		var err error
		if job, err = b.getImport(id); err != nil {
			return err
		}
		if finish && job.Committed < job.Total {
			return fmt.Errorf("job %q has committed %d of %d lines: import the rest, or abort it", id, job.Committed, job.Total)
		}
		return b.imports.Delete([]byte(id))
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("end import job in %s: %w", db.path, err)
	}
	return job, nil
}

func (b *bkts) getImport(id string) (ImportJob, error) {
	v := b.imports.Get([]byte(id))
	if v == nil {
		return ImportJob{}, fmt.Errorf("import job %q: %w", id, ErrNotFound)
	}
	var j ImportJob
	if err := json.Unmarshal(v, &j); err != nil {
		return ImportJob{}, fmt.Errorf("import job %q: %w", id, err)
	}
	return j, nil
}

func (b *bkts) putImport(j *ImportJob) error {
	v, err := json.Marshal(j)
	if err == nil {
		err = b.imports.Put([]byte(j.ID), v)
	}
	if err != nil {
		return fmt.Errorf("write import job %q: %w", j.ID, err)
	}
	return nil
}
