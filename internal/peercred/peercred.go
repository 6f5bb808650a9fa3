// Package peercred decides whether the process behind a unix socket is one
// the CLI may talk to, before the CLI sends it anything: `grants import` and
// `grants set-token` send refresh tokens over the control socket, so a
// process that took the socket's place would receive them.
//
// The rule. The daemon runs as a systemd DynamicUser, whose uid the CLI cannot
// know in advance; systemd creates the socket's directory (RuntimeDirectory=)
// owned by that uid. So the daemon's uid is taken to be the owner of the
// socket's directory, and a peer is trusted when its uid (SO_PEERCRED, read by
// the kernel at the peer's listen) is root, the CLI's own effective uid, or
// that owner. That is only sound when nobody else could have put a socket
// there, so the path is checked first, as ssh's StrictModes checks a key's
// directories: the socket's directory must not be writable by group or
// others, sticky or not (a sticky directory still lets anyone take a free
// name, the socket's name while the daemon is stopped); each directory above
// it must be owned by root, the CLI's user or the daemon's uid, and not be
// writable by group or others unless it is sticky (/tmp: then only an entry's
// owner may rename it, and that owner is checked one level down). Symbolic
// links are resolved first and the real path is checked.
//
// libpq's requirepeer names the one user the server must run as; we cannot,
// hence the directory's owner. A config that points daemon.socket into a
// directory an untrusted user owns is trusted like the config itself.
//
// peercred does no logging and knows nothing of HTTP; the daemon's client
// dials through it.
package peercred

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

var (
	// ErrUntrustedPeer is wrapped by Dial's error when the process behind
	// the socket is not one Allowed trusts. Nothing was sent to it.
	ErrUntrustedPeer = errors.New("untrusted process behind the control socket")
	// ErrUnsafeDir is wrapped by CheckSocketDir's error when another user
	// could put a socket in the directory or move it.
	ErrUnsafeDir = errors.New("unsafe control socket directory")
)

// Cred is the identity of the process at the other end of a unix socket, as
// the kernel recorded it when that process connected or listened. PID is 0
// when the peer is in another PID namespace.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// Allowed reports whether a peer running as uid may be trusted: it is root,
// this process's effective uid, or daemonUID (the owner of the socket's
// directory; see the package doc).
func Allowed(uid, daemonUID uint32) bool {
	return trusted(uid, uint32(os.Geteuid()), daemonUID)
}

func trusted(uid, self, daemonUID uint32) bool {
	return uid == 0 || uid == self || uid == daemonUID
}

// Dial connects to the unix socket at path and returns the connection only
// when the socket's directory passes CheckSocketDir and the peer passes
// Allowed; otherwise it closes the connection and returns an error wrapping
// ErrUnsafeDir or ErrUntrustedPeer that names the path, the peer and the fix.
// Errors of the connect itself (no socket, permission denied, refused) are
// wrapped unchanged, so errors.Is(err, fs.ErrNotExist) still means "no daemon".
func Dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	if err := checkPeer(conn, path); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// DialContext returns Dial for path as an http.Transport's DialContext: the
// network and address the transport passes are ignored.
func DialContext(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) { return Dial(ctx, path) }
}

func checkPeer(conn net.Conn, path string) error {
	dir := filepath.Dir(path)
	daemonUID, err := socketDir(dir)
	if err != nil {
		return err
	}
	peer, err := Of(conn)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	return judge(path, dir, peer, uint32(os.Geteuid()), daemonUID)
}

// judge is Allowed with its error, split out so that a test can judge a peer
// of another uid without running as one.
func judge(path, dir string, peer Cred, self, daemonUID uint32) error {
	if trusted(peer.UID, self, daemonUID) {
		return nil
	}
	return fmt.Errorf("%w: %s is served by uid %d (pid %d), which is neither root, you (uid %d), nor the owner of %s (uid %d); nothing was sent to it. "+
		"Find the process (ps -o user,pid,cmd -p %d); if it is not grantwatch, stop it, remove %s and restart the daemon",
		ErrUntrustedPeer, path, peer.UID, peer.PID, self, dir, daemonUID, peer.PID, path)
}

// CheckSocketDir returns nil when dir (the directory of the control socket)
// may hold the socket under the rule in the package doc, and otherwise an
// error wrapping ErrUnsafeDir naming the directory and the chmod or move that
// fixes it. A directory that does not exist is an error wrapping
// fs.ErrNotExist.
func CheckSocketDir(dir string) error {
	_, err := socketDir(dir)
	return err
}

// socketDir checks dir and returns its owner, the daemon's uid.
func socketDir(dir string) (uint32, error) {
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, fmt.Errorf("control socket directory: %w", err)
	}
	abs, err = filepath.Abs(abs)
	if err != nil {
		return 0, fmt.Errorf("control socket directory: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return 0, fmt.Errorf("control socket directory: %w", err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("%w: %s is not a directory", ErrUnsafeDir, abs)
	}
	owner := ownerOf(fi)
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return 0, fmt.Errorf("%w: %s is writable by %s (mode %04o), so another user could put a socket there that poses as the daemon: run chmod go-w %s, or put daemon.socket in a directory only the daemon's user can write (the unit's /run/grantwatch)",
			ErrUnsafeDir, abs, writers(perm), modeBits(fi.Mode()), abs)
	}
	self := uint32(os.Geteuid())
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return 0, fmt.Errorf("control socket directory %s: %w", abs, err)
		}
		if o := ownerOf(fi); !trusted(o, self, owner) {
			return 0, fmt.Errorf("%w: %s, above %s, is owned by uid %d, neither root, you (uid %d) nor the socket directory's owner (uid %d), who could replace it: move daemon.socket to a directory under root's control (the unit's /run/grantwatch)",
				ErrUnsafeDir, d, abs, o, self, owner)
		}
		if m := fi.Mode(); m.Perm()&0o022 != 0 && m&fs.ModeSticky == 0 {
			return 0, fmt.Errorf("%w: %s, above %s, is writable by %s (mode %04o) without the sticky bit, so another user could replace %s: run chmod go-w %s (or chmod +t %s)",
				ErrUnsafeDir, d, abs, writers(m.Perm()), modeBits(m), abs, d, d)
		}
		if d == filepath.Dir(d) {
			return owner, nil
		}
	}
}

func ownerOf(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

// writers names who besides the owner may write under perm.
func writers(perm fs.FileMode) string {
	switch {
	case perm&0o022 == 0o022:
		return "group and others"
	case perm&0o020 != 0:
		return "group"
	}
	return "others"
}

// modeBits is m as chmod's octal digits, the sticky bit included.
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}
