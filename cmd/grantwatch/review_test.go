package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/probes/sandbox"
)

// TestReviewHungDaemonTimesOut: a control socket that accepts connections
// but never answers (a stopped or wedged daemon) makes the CLI fail with a
// clear error in bounded time, not hang forever.
func TestReviewHungDaemonTimesOut(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "g.toml")
	os.WriteFile(cfg, []byte("[daemon]\ndb = \"gw.db\"\nsocket = \"gw.sock\"\nlisten = \"\"\n[clock]\nservers = []\n[[providers]]\nname = \"acme\"\npreset = \"google\"\nclient_id = \"x\"\n"), 0o600)
	ln, err := net.Listen("unix", filepath.Join(dir, "gw.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	done := make(chan error, 1)
	var out, errw bytes.Buffer
	go func() {
		root := newRoot(strings.NewReader(""), &out, &errw)
		root.SetArgs([]string{"--config", cfg, "status"})
		done <- root.ExecuteContext(context.Background()) // no deadline, like main
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "gw.sock") || !strings.Contains(err.Error(), "not answer") {
			t.Errorf("status against a hung daemon: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("status hangs on a control socket that never answers")
	}
}

// TestReviewStatusExitZeroWhenAllHealthy: status exits 0 with nothing to
// act on, with and without a daemon; odd ids work through every command.
func TestReviewStatusExitZeroWhenAllHealthy(t *testing.T) {
	s := newCLISetup(t, "")
	// Drop the revoked grant of the setup; add odd ids.
	if _, _, err := cli(t, s.cfgPath, "", "grants", "rm", "g2"); err != nil {
		t.Fatal(err)
	}
	odd := []string{"a b", "50%", "x#y", "q?z", "ünï"}
	var lines []string
	for _, id := range odd {
		lines = append(lines, `{"id":"`+id+`","provider":"acme","refresh_token":"`+s.sb.Issue(sandbox.Healthy)+`"}`)
	}
	if _, _, err := cli(t, s.cfgPath, strings.Join(lines, "\n"), "grants", "import", "-"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"local", "daemon"} {
		if mode == "daemon" {
			_, stop := s.startDaemon(t)
			defer stop()
		}
		for _, id := range odd {
			if out, _, err := cli(t, s.cfgPath, "", "grants", "probe", id); err != nil || !strings.Contains(out, "probe ok") {
				t.Errorf("%s: probe %q: %v %s", mode, id, err, out)
			}
			if out, _, err := cli(t, s.cfgPath, s.sb.Issue(sandbox.Healthy)+"\n", "grants", "set-token", id); err != nil || !strings.Contains(out, "probe ok") {
				t.Errorf("%s: set-token %q: %v %s", mode, id, err, out)
			}
		}
		out, _, err := cli(t, s.cfgPath, "", "status")
		if err != nil {
			t.Errorf("%s: status with every grant healthy: %v\n%s", mode, err, out)
		}
	}
}
