package etcd

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultQuota is etcd's database quota when a member reports none
// (--quota-backend-bytes, 2 GiB).
const DefaultQuota = 2 << 30

// Cluster is what the members say of their cluster (doctor).
type Cluster struct {
	// Members are the cluster's members by name (MemberList).
	Members []string
	// Endpoints are the configured endpoints' answers, in order.
	Endpoints []EndpointStatus
}

// EndpointStatus is one endpoint's answer to a status request.
type EndpointStatus struct {
	Endpoint string
	// Err is why it did not answer; the rest is zero then.
	Err error
	// MemberID is the answering member's id, Leader the leader's it knows
	// (0: none).
	MemberID, Leader uint64
	// DBSize is the member's database file; Quota its quota (DefaultQuota
	// when it reports none).
	DBSize, Quota int64
	// Alarms are the member's raised alarms ("NOSPACE" once the quota is
	// reached: the cluster then refuses writes).
	Alarms  []string
	Version string
}

// Inspect dials endpoints and asks the cluster for its members and each
// endpoint for its status. The error is a cluster that could not be
// dialled at all; an endpoint that does not answer has its Err set.
func Inspect(ctx context.Context, opts Options) (Cluster, error) {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: opts.Endpoints, DialTimeout: opts.DialTimeout, TLS: opts.TLS, Logger: zap.NewNop()})
	if err != nil {
		return Cluster{}, fmt.Errorf("dial %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	defer cli.Close()
	var c Cluster
	mctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	ml, mlErr := cli.MemberList(mctx)
	cancel()
	if mlErr == nil {
		for _, m := range ml.Members {
			c.Members = append(c.Members, m.Name)
		}
	}
	for _, ep := range opts.Endpoints {
		es := EndpointStatus{Endpoint: ep}
		sctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			es.Err = err
		} else {
			es.MemberID, es.Leader, es.DBSize, es.Quota, es.Version = st.Header.MemberId, st.Leader, st.DbSize, st.DbSizeQuota, st.Version
			if es.Quota <= 0 {
				es.Quota = DefaultQuota
			}
			es.Alarms = st.Errors
		}
		c.Endpoints = append(c.Endpoints, es)
	}
	if mlErr != nil {
		return c, fmt.Errorf("member list of %s: %w", strings.Join(opts.Endpoints, ","), mlErr)
	}
	return c, nil
}
