package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/etcd"
)

// cluster checks an etcd store ([store] backend = "etcd"): the members
// reachable, how many, a leader known, each database against its quota,
// then the store itself (schema, key) and the grantwatch instances that
// share it.
func (d *doctor) cluster(ctx context.Context, cfg *config.Config) []Check {
	s := cfg.Store
	opts := etcd.Options{Endpoints: s.Endpoints, Prefix: s.Prefix, DialTimeout: min(s.DialTimeout, d.opts.Timeout)}
	if strings.Contains(strings.Join(s.Endpoints, ","), "https://") || s.TLSCAFile != "" || s.TLSCertFile != "" {
		tlsCfg, err := etcd.TLSConfig(s.TLSCAFile, s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			return []Check{{Name: "etcd", Status: CheckFail, Detail: err.Error(), Fix: "fix the store.tls_* files: PEM certificates and key, readable by this user"}}
		}
		opts.TLS = tlsCfg
	}
	c, err := etcd.Inspect(ctx, opts)
	if err != nil && len(c.Endpoints) == 0 {
		return []Check{{Name: "etcd", Status: CheckFail, Detail: err.Error(), Fix: "check store.endpoints and that the members run (systemctl status etcd)"}}
	}
	return append(etcdChecks(c, s.Endpoints), d.etcdStore(cfg, opts)...)
}

// etcdChecks judges what the members said.
func etcdChecks(c etcd.Cluster, endpoints []string) []Check {
	var down []string
	leaders := map[uint64]bool{}
	var biggest etcd.EndpointStatus
	var alarms []string
	for _, e := range c.Endpoints {
		if e.Err != nil {
			down = append(down, fmt.Sprintf("%s (%v)", e.Endpoint, e.Err))
			continue
		}
		leaders[e.Leader] = true
		if float64(e.DBSize)/float64(e.Quota) > float64(biggest.DBSize)/float64(max(1, biggest.Quota)) {
			biggest = e
		}
		for _, a := range e.Alarms {
			alarms = append(alarms, e.Endpoint+": "+a)
		}
	}
	up := len(c.Endpoints) - len(down)
	reach := Check{Name: "etcd", Status: CheckOK, Detail: fmt.Sprintf("%d of %d endpoint(s) answer", up, len(endpoints))}
	switch {
	case up == 0:
		reach.Status, reach.Fix = CheckFail, "check store.endpoints, the network and that the members run"
		reach.Detail += ": " + strings.Join(down, "; ")
	case len(down) > 0:
		reach.Status, reach.Fix = CheckWarn, "bring the silent members back, or fix store.endpoints"
		reach.Detail += "; silent: " + strings.Join(down, "; ")
	}
	members := Check{Name: "etcd/members", Status: CheckOK, Detail: fmt.Sprintf("%d member(s): %s", len(c.Members), strings.Join(c.Members, ", "))}
	switch n := len(c.Members); {
	case n == 0:
		members.Status, members.Detail, members.Fix = CheckFail, "the member list is unknown", "check that a quorum of members runs"
	case n < 3:
		members.Status, members.Fix = CheckWarn, "run 3 (or 5) members: with fewer, losing one member stops every write"
	case n%2 == 0:
		members.Status, members.Fix = CheckWarn, "run an odd number of members: an even one tolerates no more failures than one fewer"
	}
	leader := Check{Name: "etcd/leader", Status: CheckOK, Detail: "the members agree on a leader"}
	delete(leaders, 0)
	switch {
	case up == 0:
		leader.Status, leader.Detail, leader.Fix = CheckFail, "no member answers", "see the etcd check"
	case len(leaders) == 0:
		leader.Status, leader.Detail, leader.Fix = CheckFail, "no member knows a leader: the cluster has no quorum and refuses writes", "start enough members for a majority"
	case len(leaders) > 1:
		leader.Status, leader.Detail, leader.Fix = CheckWarn, "the members name different leaders (an election is under way)", "run doctor again in a few seconds"
	}
	size := Check{Name: "etcd/db-size", Status: CheckOK}
	if biggest.Quota > 0 {
		share := float64(biggest.DBSize) / float64(biggest.Quota)
		size.Detail = fmt.Sprintf("largest database %s: %d MiB of its %d MiB quota (%.0f%%)", biggest.Endpoint, biggest.DBSize>>20, biggest.Quota>>20, 100*share)
		if share > 0.8 {
			size.Status, size.Fix = CheckWarn, "compact and defragment (etcdctl compact, etcdctl defrag; set --auto-compaction-retention), or raise --quota-backend-bytes"
		}
	}
	if len(alarms) > 0 {
		size.Status = CheckFail
		size.Detail += "; alarms: " + strings.Join(alarms, ", ")
		size.Fix = "the cluster refuses writes: compact, defragment, then etcdctl alarm disarm"
	}
	return []Check{reach, members, leader, size}
}

// fleetKeyFix is the fix of a missing or wrong key file in a fleet.
const fleetKeyFix = "every instance needs the fleet's one key file (secrets.key_file): the first `grantwatch run` or `grants import` creates it; copy that file (mode 0600) to every other instance"

// etcdStore opens the store under the prefix (schema, key) and reads the
// fleet: grants, the outbox and the grantwatch instances.
func (d *doctor) etcdStore(cfg *config.Config, opts etcd.Options) []Check {
	db := Check{Name: "database"}
	key, err := store.LoadKey(cfg.Secrets.KeyFile, false)
	if err != nil {
		db.Status, db.Detail = CheckFail, fmt.Sprintf("not opened: %v", err)
		db.Fix = fleetKeyFix
		return []Check{db}
	}
	opts.Key = key
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.Timeout+opts.DialTimeout)
	defer cancel()
	s, err := etcd.Open(ctx, opts)
	if err != nil {
		db.Status, db.Detail, db.Fix = CheckFail, err.Error(), dbFix(err)
		if errors.Is(err, store.ErrWrongKey) {
			db.Fix = fleetKeyFix
		}
		return []Check{db}
	}
	defer s.Close()
	counts, err := s.Counts()
	if err != nil {
		db.Status, db.Detail, db.Fix = CheckFail, err.Error(), "check the etcd checks above"
		return []Check{db}
	}
	n := 0
	for _, m := range counts {
		for _, v := range m {
			n += v
		}
	}
	pending, _, _ := s.OutboxStats()
	db.Status = CheckOK
	db.Detail = fmt.Sprintf("%s: schema %d, key matches, %d grant(s), %d notification(s) pending", s.Path(), store.SchemaVersion, n, pending)

	fleet := Check{Name: "fleet", Status: CheckOK}
	leader, ok, err := s.Leader(ctx)
	members, merr := s.Members(ctx)
	switch {
	case err != nil || merr != nil:
		fleet.Status, fleet.Detail, fleet.Fix = CheckWarn, fmt.Sprint(errors.Join(err, merr)), "check the etcd checks above"
	case !ok:
		fleet.Status, fleet.Detail = CheckWarn, fmt.Sprintf("no grantwatch instance leads (%d running): nothing is probed", len(members))
		fleet.Fix = "start grantwatch on at least one host (systemctl start grantwatch)"
	default:
		var ms []string
		for _, m := range members {
			ms = append(ms, fmt.Sprintf("%s (heartbeat %s ago)", m.Name, d.opts.Now().Sub(m.Heartbeat).Round(time.Second)))
		}
		fleet.Detail = fmt.Sprintf("%s leads; instances: %s", leader.Name, strings.Join(ms, ", "))
		if len(members) < 2 {
			fleet.Status, fleet.Fix = CheckWarn, "run a second instance for availability: a lone leader that dies stops all probing until it is back"
		}
	}
	return []Check{db, fleet}
}
