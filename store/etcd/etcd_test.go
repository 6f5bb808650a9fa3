package etcd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/grantwatch/grantwatch/internal/etcdtest"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
	"github.com/grantwatch/grantwatch/store/etcd"
	"github.com/grantwatch/grantwatch/store/storetest"
)

var (
	testKey  = bytes.Repeat([]byte{7}, store.KeySize)
	cluster  *etcdtest.Cluster
	prefixes atomic.Int64
)

// TestMain starts one 3-member cluster for the package; each test keeps its
// records under a prefix of its own. A crash child (storetest.RunCrash)
// connects to its parent's cluster instead.
func TestMain(m *testing.M) {
	if os.Getenv("GRANTWATCH_STORETEST_CRASH") != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "etcdstore-")
	if err != nil {
		panic(err)
	}
	cluster, err = etcdtest.New(dir, 3, etcdtest.Options{})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	cluster.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newPrefix is a prefix no other test uses.
func newPrefix() string {
	return fmt.Sprintf("/test-%d-%d/", os.Getpid(), prefixes.Add(1))
}

func openAt(t *testing.T, endpoints []string, prefix string) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(context.Background(), etcd.Options{Endpoints: endpoints, Prefix: prefix, Key: testKey})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTest(t *testing.T) *etcd.Store { return openAt(t, cluster.Endpoints, newPrefix()) }

// TestConformance holds the etcd backend, on a 3-member cluster, to the
// store contract.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

// TestConformanceCrash: a process writing result groups is SIGKILLed
// mid-write; the cluster holds every group it committed, none in part.
func TestConformanceCrash(t *testing.T) {
	loc := ""
	if cluster != nil {
		loc = strings.Join(cluster.Endpoints, ",") + "|" + newPrefix()
	}
	storetest.RunCrash(t, loc, func(t *testing.T, loc string) store.Store {
		endpoints, prefix, _ := strings.Cut(loc, "|")
		return openAt(t, strings.Split(endpoints, ","), prefix)
	})
}

func secretOf(s string) secret.Secret { return secret.Secret(s) }
