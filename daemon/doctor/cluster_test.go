package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/etcdtest"
	"github.com/grantwatch/grantwatch/store/etcd"
)

// TestDoctorEtcdCluster: with [store] backend = "etcd", doctor checks the
// embedded 3-member cluster (reachable, members, leader, database size),
// opens the store (schema, key) and says that no instance leads yet.
func TestDoctorEtcdCluster(t *testing.T) {
	ec := etcdtest.Start(t, 3, etcdtest.Options{})
	dir := t.TempDir()
	path := doctorConfig(t, dir, nil, etcdtest.StoreConfig(ec.Endpoints, "", "", time.Minute))
	doctorInitStore(t, path)

	rep := Run(context.Background(), path, doctorOpts())
	doctorWant(t, rep, "etcd", CheckOK)
	if m := doctorWant(t, rep, "etcd/members", CheckOK); !strings.Contains(m.Detail, "3 member(s)") {
		t.Errorf("members detail %q", m.Detail)
	}
	doctorWant(t, rep, "etcd/leader", CheckOK)
	doctorWant(t, rep, "etcd/db-size", CheckOK)
	if db := doctorWant(t, rep, "database", CheckOK); !strings.Contains(db.Detail, "key matches") {
		t.Errorf("database detail %q", db.Detail)
	}
	doctorWant(t, rep, "fleet", CheckWarn) // no grantwatch runs
}

// TestEtcdChecksJudgeTheMembers: what the members say, judged.
func TestEtcdChecksJudgeTheMembers(t *testing.T) {
	ok := func(ep string, leader uint64, size int64) etcd.EndpointStatus {
		return etcd.EndpointStatus{Endpoint: ep, Leader: leader, DBSize: size, Quota: 100 << 20}
	}
	for _, tt := range []struct {
		name string
		c    etcd.Cluster
		want map[string]string
	}{
		{"healthy", etcd.Cluster{Members: []string{"a", "b", "c"}, Endpoints: []etcd.EndpointStatus{ok("e1", 7, 1<<20), ok("e2", 7, 1<<20)}},
			map[string]string{"etcd": CheckOK, "etcd/members": CheckOK, "etcd/leader": CheckOK, "etcd/db-size": CheckOK}},
		// One member silent, two left: still a quorum, but say so.
		{"one silent", etcd.Cluster{Members: []string{"a", "b", "c"}, Endpoints: []etcd.EndpointStatus{ok("e1", 7, 0), {Endpoint: "e2", Err: errors.New("refused")}}},
			map[string]string{"etcd": CheckWarn, "etcd/leader": CheckOK}},
		{"no quorum", etcd.Cluster{Members: []string{"a", "b", "c"}, Endpoints: []etcd.EndpointStatus{ok("e1", 0, 0)}},
			map[string]string{"etcd/leader": CheckFail}},
		{"two members", etcd.Cluster{Members: []string{"a", "b"}, Endpoints: []etcd.EndpointStatus{ok("e1", 7, 0)}},
			map[string]string{"etcd/members": CheckWarn}},
		{"near the quota", etcd.Cluster{Members: []string{"a", "b", "c"}, Endpoints: []etcd.EndpointStatus{ok("e1", 7, 90<<20)}},
			map[string]string{"etcd/db-size": CheckWarn}},
		{"quota reached", etcd.Cluster{Members: []string{"a", "b", "c"}, Endpoints: []etcd.EndpointStatus{{Endpoint: "e1", Leader: 7, DBSize: 100 << 20, Quota: 100 << 20, Alarms: []string{"NOSPACE"}}}},
			map[string]string{"etcd/db-size": CheckFail}},
		{"none answers", etcd.Cluster{Endpoints: []etcd.EndpointStatus{{Endpoint: "e1", Err: errors.New("timeout")}}},
			map[string]string{"etcd": CheckFail, "etcd/members": CheckFail, "etcd/leader": CheckFail}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]Check{}
			for _, c := range etcdChecks(tt.c, []string{"e1", "e2"}) {
				got[c.Name] = c
				if c.Status != CheckOK && c.Fix == "" {
					t.Errorf("%s: %s without a fix", c.Name, c.Status)
				}
			}
			for name, status := range tt.want {
				if got[name].Status != status {
					t.Errorf("%s = %s (%s), want %s", name, got[name].Status, got[name].Detail, status)
				}
			}
		})
	}
}
