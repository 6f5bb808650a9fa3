package peercred

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// listen serves a unix socket at path until the test ends, answering "ok"
// over HTTP.
func listen(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	return ln
}

func serve(t *testing.T, ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// mkdir makes dir with exactly mode (no umask).
func mkdir(t *testing.T, dir string, mode fs.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	want := Cred{PID: int32(os.Getpid()), UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	for name, conn := range map[string]net.Conn{"dialler's peer (the listener)": c, "acceptor's peer (the dialler)": s} {
		got, err := Of(conn)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: Of() = %+v, want %+v", name, got, want)
		}
	}
}

func TestOfRefusesTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Of(c); err == nil {
		t.Fatal("Of(tcp conn) = nil error, want SO_PEERCRED to fail")
	}
}

// The daemon started by hand runs as the operator: same uid, trusted.
func TestDialContextSameUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	listen(t, path)
	tr := &http.Transport{DialContext: DialContext(path)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://daemon/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
		t.Fatalf("body = %q, want ok", b)
	}
}

// No daemon: the caller must still see fs.ErrNotExist and fall back to
// opening the database.
func TestDialNoSocket(t *testing.T) {
	_, err := Dial(t.Context(), filepath.Join(t.TempDir(), "s.sock"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Dial(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestDialRefusesWorldWritableDir(t *testing.T) {
	dir := mkdir(t, filepath.Join(t.TempDir(), "run"), 0o777)
	path := filepath.Join(dir, "s.sock")
	listen(t, path)
	_, err := Dial(t.Context(), path)
	if !errors.Is(err, ErrUnsafeDir) {
		t.Fatalf("Dial = %v, want ErrUnsafeDir", err)
	}
	if want := "chmod go-w " + dir; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the fix %q", err, want)
	}
}

func TestCheckSocketDir(t *testing.T) {
	tests := []struct {
		name         string
		parent, mode fs.FileMode // parent 0: the test's own 0700 temp dir
		want         string      // "" for nil, else a substring of the error
	}{
		{name: "private", mode: 0o700},
		{name: "group may enter (systemd's 0750)", mode: 0o750},
		{name: "world may enter", mode: 0o755},
		{name: "group-writable", mode: 0o770, want: "is writable by group (mode 0770)"},
		{name: "world-writable", mode: 0o777, want: "is writable by group and others (mode 0777)"},
		// Anyone may create the socket's name in /tmp while the daemon is down.
		{name: "sticky does not save the socket's own directory", mode: fs.ModeSticky | 0o777, want: "mode 1777"},
		{name: "world-writable parent", parent: 0o777, mode: 0o700, want: "without the sticky bit"},
		{name: "sticky world-writable parent (/tmp)", parent: fs.ModeSticky | 0o777, mode: 0o700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			if tt.parent != 0 {
				base = mkdir(t, filepath.Join(base, "p"), tt.parent)
			}
			dir := mkdir(t, filepath.Join(base, "d"), tt.mode)
			err := CheckSocketDir(dir)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckSocketDir = %v, want nil", err)
			case tt.want == "":
			case !errors.Is(err, ErrUnsafeDir):
				t.Fatalf("CheckSocketDir = %v, want ErrUnsafeDir", err)
			case !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "chmod"):
				t.Fatalf("CheckSocketDir = %q, want it to contain %q and the chmod to run", err, tt.want)
			}
		})
	}
}

// A symbolic link in a safe place does not make an unsafe target safe.
func TestCheckSocketDirFollowsSymlinks(t *testing.T) {
	base := t.TempDir()
	target := mkdir(t, filepath.Join(base, "open"), 0o777)
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	err := CheckSocketDir(link)
	if !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), target) {
		t.Fatalf("CheckSocketDir(link) = %v, want ErrUnsafeDir naming %s", err, target)
	}
}

func TestJudge(t *testing.T) {
	const self, daemon = 1000, 61234
	for _, tt := range []struct {
		name string
		uid  uint32
		ok   bool
	}{
		{"root (or systemd's socket activation)", 0, true},
		{"the CLI's own user", self, true},
		{"the directory's owner: the DynamicUser", daemon, true},
		{"anyone else", 1001, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := judge("/run/grantwatch/grantwatch.sock", "/run/grantwatch", Cred{PID: 4242, UID: tt.uid}, self, daemon)
			if tt.ok {
				if err != nil {
					t.Fatalf("judge = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrUntrustedPeer) {
				t.Fatalf("judge = %v, want ErrUntrustedPeer", err)
			}
			for _, want := range []string{"/run/grantwatch/grantwatch.sock is served by uid 1001 (pid 4242)", "you (uid 1000)", "owner of /run/grantwatch (uid 61234)", "nothing was sent", "ps -o user,pid,cmd -p 4242"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// TestDialOtherUID runs the DynamicUser case for real: a listener whose uid
// is neither root nor ours is trusted in the directory it owns, and refused
// once its socket is moved into a directory it does not own. It needs root
// (to listen as uid 65534 through seteuid).
func TestDialOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to listen as another uid")
	}
	const nobody = 65534
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil { // let nobody reach base
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	own := mkdir(t, filepath.Join(base, "own"), 0o700)
	if err := os.Chown(own, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(own, "s.sock")
	if err := syscall.Seteuid(nobody); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err := syscall.Seteuid(0); err != nil {
		panic(err) // the rest of the test binary would run as nobody
	}
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)

	c, err := Dial(t.Context(), path)
	if err != nil {
		t.Fatalf("Dial(socket of the directory's owner) = %v, want it trusted", err)
	}
	if cred, _ := Of(c); cred.UID != nobody {
		t.Errorf("peer uid = %d, want %d", cred.UID, nobody)
	}
	c.Close()

	moved := filepath.Join(mkdir(t, filepath.Join(base, "root"), 0o755), "s.sock")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	_, err = Dial(t.Context(), moved)
	if !errors.Is(err, ErrUntrustedPeer) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("Dial(socket of uid %d in root's directory) = %v, want ErrUntrustedPeer naming the uid", nobody, err)
	}
}
