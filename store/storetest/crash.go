package storetest

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

// crashEnv makes the test binary RunCrash's child; its value is the
// store's location.
const crashEnv = "GRANTWATCH_STORETEST_CRASH"

const (
	crashGrants = 8
	crashRounds = 3
	metaGroup   = "storetest/group"
)

// RunCrash kills a process in the middle of writing result groups, several
// times, and checks what the store kept after each kill: every group the
// process saw committed, none in part (grants, rotated tokens, due entries,
// history, outbox and meta of a group all there, or none of them).
//
// The test calling it must be a top-level test: its binary runs again as
// the child (chosen by -test.run and an environment variable), which
// opens the store at location with open and writes groups of crashGrants
// results until it is killed with SIGKILL, wherever it is: between two
// commits, or inside one (before or after its fsync). open(t, location)
// opens the store at location and closes it at t's cleanup; the parent
// opens it to set up and again after each kill.
//
// A SIGKILL stops the process, not the machine: what the process wrote
// to the kernel survives it. What RunCrash shows is that a commit is
// all-or-nothing from the process's side and is durable once it returned.
func RunCrash(t *testing.T, location string, open func(t *testing.T, location string) store.Store) {
	if loc := os.Getenv(crashEnv); loc != "" {
		crashChild(t, open(t, loc))
		return
	}
	s := open(t, location)
	gs := make([]store.NewGrant, crashGrants)
	for i := range gs {
		gs[i] = store.NewGrant{ID: fmt.Sprintf("c%d", i), Provider: "google", RefreshToken: "t"}
	}
	importGrants(t, s, gs, T0)
	s.Close()

	acked := 0
	for round := range crashRounds {
		acked = crashOnce(t, location, round, acked)
		s := open(t, location)
		checkGroups(t, s, acked)
		s.Close()
	}
}

// crashOnce runs the child until it has reported five more commits, kills
// it a moment later and returns the last group it reported.
func crashOnce(t *testing.T, location string, round, acked int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+location)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for seen := 0; seen < 5; {
		if !sc.Scan() {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the child stopped after %d commits", round, seen)
		}
		line := sc.Text()
		if g, ok := strings.CutPrefix(line, "committed "); ok {
			acked, _ = strconv.Atoi(g)
			seen++
		} else if strings.HasPrefix(line, "error ") {
			t.Fatalf("round %d: child: %s", round, line)
		}
	}
	// A little later each round: the kill lands in a commit or between two.
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	cmd.Process.Signal(syscall.SIGKILL)
	// The child kept committing (and saying so) until the kill: what it
	// said before it died is still in the pipe.
	for sc.Scan() {
		if g, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			acked, _ = strconv.Atoi(g)
		}
	}
	cmd.Wait()
	return acked
}

// crashChild writes result groups for ever: group n sets every grant's
// Failures to n, rotates its token to tok-n-<id>, moves its due time to
// T0+n minutes, adds a history entry, and enqueues one outbox entry and
// the meta key, all in one ApplyAll.
func crashChild(t *testing.T, s store.Store) {
	v, err := s.GetMeta(metaGroup)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	n, _ := strconv.Atoi(string(v))
	for {
		n++
		items := make([]store.ApplyItem, crashGrants)
		for i := range items {
			id := fmt.Sprintf("c%d", i)
			items[i] = store.ApplyItem{ID: id, Fn: func(cur store.Grant) (store.Change, error) {
				cur.Failures, cur.NextDueAt, cur.State = n, T0.Add(time.Duration(n)*time.Minute), store.StateDegraded
				ch := store.Change{Grant: cur, NewToken: secret.Secret(fmt.Sprintf("tok-%d-%s", n, id)),
					History: &store.HistoryEntry{At: T0, To: store.StateDegraded, Note: "group " + strconv.Itoa(n)}}
				if i == 0 {
					ch.Outbox = []store.OutboxEntry{{Receiver: "hook", Payload: []byte(strconv.Itoa(n))}}
					ch.Meta = map[string][]byte{metaGroup: []byte(strconv.Itoa(n))}
				}
				return ch, nil
			}}
		}
		errs, err := s.ApplyAll(items)
		if err = errors.Join(err, errors.Join(errs...)); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		fmt.Println("committed", n)
	}
}

// checkGroups checks that the store holds group g, all of it, with g the
// last acknowledged group or the one after (committed, killed before it
// said so), and every earlier group's outbox entry.
func checkGroups(t *testing.T, s store.Store, acked int) {
	t.Helper()
	v, err := s.GetMeta(metaGroup)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := strconv.Atoi(string(v))
	if g != acked && g != acked+1 {
		t.Fatalf("the store holds group %d, the child reported %d committed", g, acked)
	}
	for i := range crashGrants {
		id := fmt.Sprintf("c%d", i)
		gr := get(t, s, id)
		if gr.Failures != g || !gr.NextDueAt.Equal(T0.Add(time.Duration(g)*time.Minute)) {
			t.Errorf("%s holds Failures %d due %v; group %d is stored", id, gr.Failures, gr.NextDueAt, g)
		}
		if tok, want := token(t, s, id), fmt.Sprintf("tok-%d-%s", g, id); tok != want {
			t.Errorf("%s's token = %q, want %q", id, tok, want)
		}
		h, err := s.History(id)
		if err != nil || len(h) == 0 || h[len(h)-1].Note != "group "+strconv.Itoa(g) {
			t.Errorf("%s's last history entry: %+v, %v; want group %d", id, h, err, g)
		}
	}
	es, err := s.PendingOutbox("hook", 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for n := 1; n <= g; n++ {
		want = append(want, strconv.Itoa(n))
	}
	if got := payloads(es); got != strings.Join(want, ",") {
		t.Errorf("outbox = %s, want one entry per group 1..%d", got, g)
	}
	if ls, err := s.Due(T0.Add(time.Duration(g)*time.Minute), 0, nil); err != nil || len(ls) != crashGrants {
		t.Errorf("due at group %d's time: %d grants, %v; want %d", g, len(ls), err, crashGrants)
	}
}
