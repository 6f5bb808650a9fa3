// Package etcd is grantwatch's store on an etcd cluster ([store] backend =
// "etcd"): the store.Store contract kept as keys under one prefix, so that
// several grantwatch daemons share one state and one of them, the leader
// (election.go), probes. bbolt (package store) stays the default; this
// package exists for availability, not speed.
//
// Keys, under the prefix (default "/grantwatch/"):
//
//	schema, canary, keyid        as in a bbolt file's meta bucket
//	seq/row, seq/outbox, seq/import
//	                             the last row, outbox Seq and import job number given out
//	removedgen                   the highest TokenGen of a removed grant
//	g/<id>                       the grant: row, the record (store.EncodeGrant), its
//	                             history (store.EncodeHistory, at most the limit) and
//	                             the sealed token; one key, one revision to compare
//	due/<ns><row>                → id; 16 hex digits each, so key order is due order
//	st/<state>\0<provider>\0<row> → id, for reconnect_required, on_hold and degraded
//	                             grants only (indexed: a healthy or pending grant's
//	                             probe writes no index entry)
//	cnt/<provider>\0<state>\0<shard>
//	                             → decimal count; Counts sums the shards (txn.go)
//	ob/<receiver>\0<seq>, dead/<receiver>\0<seq>
//	                             → outbox entry, dead letter (JSON, as bbolt)
//	m/<key>                      daemon meta
//	imp/<id>                     resumable import job (JSON)
//	leader/, members/<name>      the election and the members' heartbeats
//
// A probe of a healthy grant thus writes three keys (its record and its
// due entry, moved); one that changes its state, a state index entry and
// a counter more.
//
// Every write is an etcd transaction that compares the revision of every
// grant it read (and of the counters and sequences it moves) with the
// revision it read, so a concurrent write makes it read again and recompute
// (txn.go); a leader's writes also compare its election key (the fence).
// Tokens stay sealed: AES-256-GCM with the same additional data as bbolt's,
// since etcd keeps them at rest and in its snapshots.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/grantwatch/grantwatch/store"
)

// Defaults of Options.
const (
	DefaultPrefix         = "/grantwatch/"
	DefaultDialTimeout    = 5 * time.Second
	defaultRequestTimeout = 10 * time.Second
	defaultHistoryLimit   = 50
)

// Options configures Open. Zero values select the defaults noted per field.
type Options struct {
	// Endpoints are the cluster's client URLs. Required unless Client is
	// set.
	Endpoints []string
	// Prefix is the key prefix every record is kept under; it ends in "/".
	// Default "/grantwatch/". Two fleets may share a cluster under two
	// prefixes.
	Prefix string
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds each request to the cluster. Default 10s.
	RequestTimeout time.Duration
	// TLS, when set, is the client's TLS config (TLSConfig builds it from
	// files).
	TLS *tls.Config
	// Key is the 32-byte AES-256 key that seals refresh tokens. Required.
	Key []byte
	// HistoryLimit is how many history entries are kept per grant.
	// Default 50.
	HistoryLimit int
	// Client, when set, is used instead of dialling Endpoints (tests); Close
	// leaves it open.
	Client *clientv3.Client
}

// Store is the store on an etcd cluster. It is safe for concurrent use.
type Store struct {
	cli          *clientv3.Client
	ownClient    bool
	prefix       string
	where        string // for errors and Path: endpoints and prefix
	sealer       *store.Sealer
	historyLimit int
	timeout      time.Duration
	// fence, when set, is compared in every write (SetFence).
	fence atomic.Pointer[Fence]
	// seen holds the records the due scan read, for ApplyAll (apply.go).
	seen seenCache
	// base is every request's context; Abort and Close cancel it.
	base  context.Context
	abort context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// ErrFenced is a write refused because this instance's leadership (the
// fence it was given) ended: another instance leads now.
var ErrFenced = errors.New("write refused: this instance no longer leads (its election key is gone)")

// ErrUnreachable is a cluster that did not answer.
var ErrUnreachable = errors.New("etcd cluster unreachable")

// Open connects to the cluster and checks the store under the prefix: a new
// prefix gets the schema version and a canary sealed with opts.Key; an
// existing one is refused when it was written by a newer grantwatch
// (store.ErrNewerSchema) or sealed with another key (store.ErrWrongKey).
func Open(ctx context.Context, opts Options) (*Store, error) {
	sealer, err := store.NewSealer(opts.Key)
	if err != nil {
		return nil, fmt.Errorf("open etcd store: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	if opts.HistoryLimit <= 0 {
		opts.HistoryLimit = defaultHistoryLimit
	}
	base, abort := context.WithCancel(context.Background())
	s := &Store{
		base:         base,
		abort:        abort,
		cli:          opts.Client,
		prefix:       opts.Prefix,
		sealer:       sealer,
		historyLimit: opts.HistoryLimit,
		timeout:      opts.RequestTimeout,
	}
	endpoints := opts.Endpoints
	if s.cli == nil {
		if len(endpoints) == 0 {
			return nil, errors.New("open etcd store: store.endpoints is empty: name at least one of the cluster's client URLs")
		}
		s.cli, err = clientv3.New(clientv3.Config{
			Endpoints:   endpoints,
			DialTimeout: opts.DialTimeout,
			TLS:         opts.TLS,
			Logger:      zap.NewNop(),
			// Keep-alive pings find a dead connection in seconds, not
			// when the next request times out.
			DialKeepAliveTime:    opts.DialTimeout,
			DialKeepAliveTimeout: opts.DialTimeout,
			PermitWithoutStream:  true,
		})
		if err != nil {
			return nil, fmt.Errorf("open etcd store at %s: %w", strings.Join(endpoints, ","), err)
		}
		s.ownClient = true
	} else if len(endpoints) == 0 {
		endpoints = s.cli.Endpoints()
	}
	s.where = Where(endpoints, s.prefix)
	octx, cancel := context.WithTimeout(ctx, max(opts.DialTimeout, opts.RequestTimeout))
	defer cancel()
	if err := s.checkOrInit(octx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Where names a store by its endpoints and prefix (Path).
func Where(endpoints []string, prefix string) string {
	return "etcd " + strings.Join(endpoints, ",") + " prefix " + prefix
}

// checkOrInit writes the schema, canary and key id under a new prefix, or
// checks those of an existing one; it writes nothing under a prefix it
// refuses.
func (s *Store) checkOrInit(ctx context.Context) error {
	schemaKey := s.prefix + "schema"
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(schemaKey), "=", 0)).
		Then(clientv3.OpPut(schemaKey, strconv.Itoa(store.SchemaVersion)),
			clientv3.OpPut(s.prefix+"canary", string(s.sealer.Canary())),
			clientv3.OpPut(s.prefix+"keyid", s.sealer.Fingerprint())).
		Else(clientv3.OpGet(schemaKey), clientv3.OpGet(s.prefix+"canary"), clientv3.OpGet(s.prefix+"keyid")).
		Commit()
	if err != nil {
		return s.unreachable("open", err)
	}
	if resp.Succeeded {
		return nil
	}
	val := func(i int) []byte {
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			return kvs[0].Value
		}
		return nil
	}
	v, err := strconv.Atoi(string(val(0)))
	if err != nil || v < 1 {
		return fmt.Errorf("open %s: %w (schema version %q unreadable); the prefix holds something else: choose another store.prefix", s.where, store.ErrCorrupt, val(0))
	}
	if v > store.SchemaVersion {
		return fmt.Errorf("open %s: %w: schema version %d, this grantwatch reads up to %d; run a newer grantwatch (nothing was modified)", s.where, store.ErrNewerSchema, v, store.SchemaVersion)
	}
	if !s.sealer.OpenCanary(val(1)) {
		return store.WrongKeyError(s.where, string(val(2)), s.sealer)
	}
	return nil
}

// unreachable wraps a request error, adding ErrUnreachable when the
// cluster did not answer in time.
func (s *Store) unreachable(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s %s: %w: %w; check store.endpoints and that a quorum of members runs", what, s.where, ErrUnreachable, err)
	}
	return fmt.Errorf("%s %s: %w", what, s.where, err)
}

// Path names the cluster and prefix (never a secret).
func (s *Store) Path() string { return s.where }

// Prefix is the key prefix of the store.
func (s *Store) Prefix() string { return s.prefix }

// Client is the store's etcd client (the election and doctor use it).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close closes the client Open dialled. Safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.abort()
		if s.ownClient {
			s.closeErr = s.cli.Close()
		}
	})
	return s.closeErr
}

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base, s.timeout)
}

// Abort fails every request in flight, and every later one, at once: a
// leader whose term ended stops waiting on a cluster it cannot reach.
func (s *Store) Abort() { s.abort() }

// TLSConfig builds a client TLS config from PEM files: caFile, when set, is
// the CA that signed the members' certificates (else the system pool);
// certFile and keyFile, both or neither, are the client certificate.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("store.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store.tls_ca_file: %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("store.tls_cert_file / store.tls_key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
