package fdlimit

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

const childEnv = "GRANTWATCH_FDLIMIT_CHILD"

// TestMain lets the test binary be the child of TestGoRaisesSoftLimit: it
// prints its limits as the Go runtime left them and exits.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		soft, hard, err := OpenFiles()
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(soft, hard)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The daemon relies on Go raising the soft limit (systemd's default is 1024)
// instead of doing it itself: a Go program started with a low soft limit runs
// with one at least hard-1.
func TestGoRaisesSoftLimit(t *testing.T) {
	soft, hard, err := OpenFiles()
	if err != nil {
		t.Fatal(err)
	}
	const low = 256
	if hard < low+2 {
		t.Skipf("hard limit %d leaves no room below it", hard)
	}
	// Setrlimit also tells os/exec not to restore the original soft limit
	// in the child, so the child starts with low.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: low, Max: hard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: soft, Max: hard}) })

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	var gotSoft, gotHard uint64
	if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &gotSoft, &gotHard); err != nil {
		t.Fatalf("child printed %q: %v", out, err)
	}
	if gotHard != hard || gotSoft < hard-1 {
		t.Fatalf("child started with soft limit %d runs with soft %d, hard %d; want soft >= %d (hard-1), hard %d", low, gotSoft, gotHard, hard-1, hard)
	}
	t.Logf("started with soft %d, hard %d: runs with soft %d", low, hard, gotSoft)
}
