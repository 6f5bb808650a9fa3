package etcd

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/grantwatch/grantwatch/store"
)

// Enqueue adds entries to the outbox (store.DB.Enqueue).
func (s *Store) Enqueue(entries ...store.OutboxEntry) error {
	seqKey := s.seqKey("outbox")
	_, err := write(s, "enqueue", []int{0}, func([]int) []string { return nil }, nil,
		func(v *view, _ []int, _ []*unit) ([]*unit, error) {
			u := newUnit()
			u.items = []int{0}
			need, atLeast := 0, uint64(0)
			for _, e := range entries {
				if err := store.CheckName("receiver", e.Receiver); err != nil {
					return nil, fmt.Errorf("enqueue: %w", err)
				}
				if e.Seq == 0 {
					need++
				}
				atLeast = max(atLeast, e.Seq)
			}
			first, err := s.reserve(seqKey, need, atLeast)
			if err != nil {
				return nil, err
			}
			seq, now := first-1, time.Now()
			for _, e := range entries {
				if seq, err = s.putOutbox(u, e, seq, now); err != nil {
					return nil, err
				}
			}
			if err := u.tooLarge(); err != nil {
				return nil, err
			}
			return []*unit{u}, nil
		})
	return err
}

func decodeEntry(val []byte, e *store.OutboxEntry) error {
	if err := json.Unmarshal(val, e); err != nil {
		return fmt.Errorf("decode outbox entry: %w", err)
	}
	return nil
}

// PendingOutbox returns up to limit (<= 0: all) of receiver's entries in
// Seq order.
func (s *Store) PendingOutbox(receiver string, limit int) ([]store.OutboxEntry, error) {
	return s.entries(false, receiver, limit)
}

func (s *Store) entries(dead bool, receiver string, limit int) ([]store.OutboxEntry, error) {
	p := s.outboxPrefix(dead, receiver)
	var out []store.OutboxEntry
	errFull := fmt.Errorf("full")
	err := s.scan(p, clientv3.GetPrefixRangeEnd(p), page, func(_ string, val []byte) error {
		var e store.OutboxEntry
		if err := decodeEntry(val, &e); err != nil {
			return err
		}
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			return errFull
		}
		return nil
	})
	if err != nil && err != errFull { //nolint:errorlint // our own sentinel, never wrapped
		return nil, err
	}
	return out, nil
}

// moveEntries rewrites existing entries found by receiver and seq: fn gets
// each as stored and returns it changed; to says where it goes (the dead
// letters or the outbox; deleted from the other when it moves). Entries not
// found in from are passed over. It returns how many it moved.
func (s *Store) moveEntries(what string, fromDead, toDead bool, receiver string, seqs []uint64, fn func(*store.OutboxEntry)) (int, error) {
	units, err := write(s, what, seqs,
		func(rest []uint64) []string {
			keys := make([]string, len(rest))
			for i, seq := range rest {
				keys[i] = s.outboxKey(fromDead, receiver, seq)
			}
			return keys
		}, nil,
		func(v *view, rest []uint64, _ []*unit) ([]*unit, error) {
			var units []*unit
			for i, seq := range rest {
				from := s.outboxKey(fromDead, receiver, seq)
				x := v.get(from)
				if x.rev == 0 {
					continue
				}
				var e store.OutboxEntry
				if err := decodeEntry(x.val, &e); err != nil {
					return nil, err
				}
				fn(&e)
				val, err := json.Marshal(&e)
				if err != nil {
					return nil, fmt.Errorf("encode outbox entry: %w", err)
				}
				u := newUnit()
				u.items = []int{i}
				u.deps = []string{from}
				to := s.outboxKey(toDead, receiver, seq)
				u.put(to, string(val))
				u.writes[to] = val
				if to != from {
					u.del(from)
					u.writes[from] = nil
				}
				units = append(units, u)
			}
			return units, nil
		})
	return len(units), err
}

// UpdateOutbox stores the delivery bookkeeping of existing entries.
func (s *Store) UpdateOutbox(entries ...store.OutboxEntry) error {
	byReceiver := map[string][]store.OutboxEntry{}
	for _, e := range entries {
		byReceiver[e.Receiver] = append(byReceiver[e.Receiver], e)
	}
	for receiver, es := range byReceiver {
		seqs := make([]uint64, len(es))
		upd := map[uint64]store.OutboxEntry{}
		for i, e := range es {
			seqs[i], upd[e.Seq] = e.Seq, e
		}
		_, err := s.moveEntries("update outbox", false, false, receiver, seqs, func(e *store.OutboxEntry) {
			u := upd[e.Seq]
			e.Attempts, e.NextAttemptAt, e.LastError, e.NotificationID = u.Attempts, u.NextAttemptAt, u.LastError, u.NotificationID
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// AckOutbox deletes entries the receiver accepted.
func (s *Store) AckOutbox(receiver string, seqs ...uint64) error {
	_, err := write(s, "ack outbox", seqs, func([]uint64) []string { return nil }, nil,
		func(_ *view, rest []uint64, _ []*unit) ([]*unit, error) {
			var units []*unit
			for i, seq := range rest {
				u := newUnit()
				u.items = []int{i}
				u.del(s.outboxKey(false, receiver, seq))
				units = append(units, u)
			}
			return units, nil
		})
	return err
}

// DeadLetter moves entries out of the outbox into the dead letters.
func (s *Store) DeadLetter(receiver, reason string, seqs ...uint64) error {
	now := time.Now()
	_, err := s.moveEntries("dead-letter", false, true, receiver, seqs, func(e *store.OutboxEntry) {
		e.DeadReason, e.DeadAt = reason, now
	})
	return err
}

// DeadLetters calls fn for each dead letter, by receiver then Seq.
func (s *Store) DeadLetters(fn func(store.OutboxEntry) error) error {
	p := s.prefix + "dead/"
	return s.scan(p, clientv3.GetPrefixRangeEnd(p), page, func(_ string, val []byte) error {
		var e store.OutboxEntry
		if err := decodeEntry(val, &e); err != nil {
			return err
		}
		return fn(e)
	})
}

// OutboxStats returns the number of pending entries and the oldest one's
// CreatedAt: a count and one read per receiver.
func (s *Store) OutboxStats() (int, time.Time, error) {
	p := s.prefix + "ob/"
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, time.Time{}, s.unreachable("read from", err)
	}
	var oldest time.Time
	from := p
	for {
		r, err := s.cli.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithLimit(1))
		if err != nil {
			return 0, time.Time{}, s.unreachable("read from", err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		var e store.OutboxEntry
		if err := decodeEntry(r.Kvs[0].Value, &e); err != nil {
			return 0, time.Time{}, err
		}
		if oldest.IsZero() || e.CreatedAt.Before(oldest) {
			oldest = e.CreatedAt
		}
		// The next receiver's keys start after receiver ‖ 1.
		k := string(r.Kvs[0].Key)
		from = k[:strings.IndexByte(k[len(p):], 0)+len(p)] + "\x01"
	}
	return int(resp.Count), oldest, nil
}

// Redeliver moves dead letters of receiver back into the outbox, to be sent
// as if new; no seqs means all of receiver's.
func (s *Store) Redeliver(receiver string, seqs []uint64, now time.Time) (int, error) {
	if len(seqs) == 0 {
		dead, err := s.entries(true, receiver, 0)
		if err != nil {
			return 0, err
		}
		for _, e := range dead {
			seqs = append(seqs, e.Seq)
		}
	}
	return s.moveEntries("redeliver", true, false, receiver, seqs, func(e *store.OutboxEntry) {
		e.CreatedAt, e.Attempts, e.NextAttemptAt, e.LastError = now, 0, time.Time{}, ""
		e.DeadReason, e.DeadAt = "", time.Time{}
	})
}

// GetMeta returns the daemon state under key, or nil.
func (s *Store) GetMeta(key string) ([]byte, error) {
	v, err := s.read([]string{s.metaKey(key)})
	if err != nil {
		return nil, err
	}
	return v.get(s.metaKey(key)).val, nil
}

// PutMeta stores val under key; nil deletes it.
func (s *Store) PutMeta(key string, val []byte) error {
	if key == "" {
		return fmt.Errorf("meta key is empty")
	}
	_, err := write(s, "write meta", []int{0}, func([]int) []string { return nil }, nil,
		func(*view, []int, []*unit) ([]*unit, error) {
			u := newUnit()
			u.items = []int{0}
			if val == nil {
				u.del(s.metaKey(key))
			} else {
				u.put(s.metaKey(key), string(val))
			}
			return []*unit{u}, nil
		})
	return err
}

// jobUnit is the unit of an import job's progress that follows a batch's
// grants: keys it reads, and the build of its writes given the grants'
// counts.
type jobUnit struct {
	keys  []string
	build func(v *view, u *unit, created, replaced int) error
}

// BeginImport records a new import job (store.DB.BeginImport).
func (s *Store) BeginImport(job store.ImportJob) (store.ImportJob, error) {
	if job.Total < 0 {
		return store.ImportJob{}, fmt.Errorf("begin import: total %d lines is negative", job.Total)
	}
	job.Committed, job.Created, job.Replaced, job.UpdatedAt = 0, 0, 0, time.Time{}
	if job.StartedAt.IsZero() {
		job.StartedAt = time.Now().UTC()
	}
	seqKey := s.seqKey("import")
	_, err := write(s, "begin import", []int{0}, func([]int) []string { return nil }, nil,
		func(v *view, _ []int, _ []*unit) ([]*unit, error) {
			seq, err := s.reserve(seqKey, 1, 0)
			if err != nil {
				return nil, err
			}
			job.ID = "import-" + strconv.FormatUint(seq, 10)
			u := newUnit()
			u.items = []int{0}
			val, err := json.Marshal(&job)
			if err != nil {
				return nil, err
			}
			u.put(s.importKey(job.ID), string(val))
			return []*unit{u}, nil
		})
	if err != nil {
		return store.ImportJob{}, fmt.Errorf("begin import in %s: %w", s.where, err)
	}
	return job, nil
}

func (s *Store) jobIn(v *view, id string) (store.ImportJob, error) {
	x := v.get(s.importKey(id))
	if x.rev == 0 {
		return store.ImportJob{}, fmt.Errorf("import job %q: %w", id, store.ErrNotFound)
	}
	var j store.ImportJob
	if err := json.Unmarshal(x.val, &j); err != nil {
		return store.ImportJob{}, fmt.Errorf("import job %q: %w", id, err)
	}
	return j, nil
}

// ImportBatch imports gs and advances job id by lines (store.DB.ImportBatch).
// In etcd the batch's grants land in transactions of a few dozen, and the
// job's progress in one of its own after them, comparing the job's
// revision: after a crash between them the job still says the batch's
// lines are to do, and resuming imports those grants again (as a
// replacement of the same token, TokenGen raised).
func (s *Store) ImportBatch(id string, from, lines int, gs []store.NewGrant, now time.Time, opts store.ImportOptions) (store.ImportJob, error) {
	if lines < len(gs) || lines <= 0 {
		return store.ImportJob{}, fmt.Errorf("import batch of job %q: %d lines cannot hold %d grants", id, lines, len(gs))
	}
	if err := store.CheckImport(gs); err != nil {
		return store.ImportJob{}, fmt.Errorf("import batch of job %q at line %d: %w", id, from+1, err)
	}
	jk := s.importKey(id)
	// The job is checked before any grant is written.
	v, err := s.read([]string{jk})
	if err != nil {
		return store.ImportJob{}, err
	}
	job, err := s.jobIn(v, id)
	if err != nil {
		return store.ImportJob{}, err
	}
	if from != job.Committed {
		return store.ImportJob{}, fmt.Errorf("%w: job %q has committed %d lines, the batch starts after %d", store.ErrImportOffset, id, job.Committed, from)
	}
	if job.Total > 0 && from+lines > job.Total {
		return store.ImportJob{}, fmt.Errorf("job %q: a batch of lines %d to %d goes past its %d lines", id, from+1, from+lines, job.Total)
	}
	var out store.ImportJob
	_, err = s.importGrants(gs, now, opts, &jobUnit{keys: []string{jk}, build: func(v *view, u *unit, created, replaced int) error {
		j, err := s.jobIn(v, id)
		if err != nil {
			return err
		}
		if from != j.Committed {
			return fmt.Errorf("%w: job %q has committed %d lines, the batch starts after %d", store.ErrImportOffset, id, j.Committed, from)
		}
		j.Committed += lines
		j.Created += created
		j.Replaced += replaced
		j.UpdatedAt = now
		val, err := json.Marshal(&j)
		if err != nil {
			return err
		}
		u.deps = []string{jk}
		u.put(jk, string(val))
		u.writes[jk] = val
		out = j
		return nil
	}})
	if err != nil {
		return store.ImportJob{}, fmt.Errorf("import into %s: %w", s.where, err)
	}
	return out, nil
}

// PendingImports returns the unfinished import jobs, oldest first.
func (s *Store) PendingImports() ([]store.ImportJob, error) {
	p := s.prefix + "imp/"
	var jobs []store.ImportJob
	err := s.scan(p, clientv3.GetPrefixRangeEnd(p), page, func(k string, val []byte) error {
		var j store.ImportJob
		if err := json.Unmarshal(val, &j); err != nil {
			return fmt.Errorf("import job %q: %w", strings.TrimPrefix(k, p), err)
		}
		jobs = append(jobs, j)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read import jobs in %s: %w", s.where, err)
	}
	slices.SortFunc(jobs, func(a, b store.ImportJob) int {
		return cmp.Or(a.StartedAt.Compare(b.StartedAt), cmp.Compare(len(a.ID), len(b.ID)), cmp.Compare(a.ID, b.ID))
	})
	return jobs, nil
}

// FinishImport deletes the record of a job whose lines are all committed.
func (s *Store) FinishImport(id string) (store.ImportJob, error) { return s.endImport(id, true) }

// AbortImport deletes the record of a job, whatever its progress.
func (s *Store) AbortImport(id string) (store.ImportJob, error) { return s.endImport(id, false) }

func (s *Store) endImport(id string, finish bool) (store.ImportJob, error) {
	jk := s.importKey(id)
	var job store.ImportJob
	_, err := write(s, "end import job", []int{0}, func([]int) []string { return []string{jk} }, nil,
		func(v *view, _ []int, _ []*unit) ([]*unit, error) {
			var err error
			if job, err = s.jobIn(v, id); err != nil {
				return nil, err
			}
			if finish && job.Committed < job.Total {
				return nil, fmt.Errorf("job %q has committed %d of %d lines: import the rest, or abort it", id, job.Committed, job.Total)
			}
			u := newUnit()
			u.items = []int{0}
			u.deps = []string{jk}
			u.del(jk)
			return []*unit{u}, nil
		})
	if err != nil {
		return store.ImportJob{}, fmt.Errorf("end import job in %s: %w", s.where, err)
	}
	return job, nil
}
