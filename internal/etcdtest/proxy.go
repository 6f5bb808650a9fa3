package etcdtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to the members' client URLs, so that a
// test can cut one client off the cluster (a partition) while the others
// stay connected.
type Proxy struct {
	// Endpoints are the proxy's URLs, one per member, in the cluster's
	// order.
	Endpoints []string
	mu        sync.Mutex
	cut       bool
	lns       []net.Listener
	conns     []net.Conn
}

// NewProxy starts a proxy in front of c, closed at t's cleanup.
func NewProxy(t testing.TB, c *Cluster) *Proxy {
	t.Helper()
	p := &Proxy{}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.lns = append(p.lns, ln)
		p.Endpoints = append(p.Endpoints, "http://"+ln.Addr().String())
		go p.serve(ln, u.Host)
	}
	t.Cleanup(p.Cut)
	return p
}

func (p *Proxy) serve(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// Cut closes the listeners and every connection: the client behind the
// proxy can no longer reach any member.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, ln := range p.lns {
		ln.Close()
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
