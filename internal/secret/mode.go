package secret

import (
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// ModeError reports a secret file (the sealing key, a client secret file, a
// receiver's url_file, an API token file) that someone besides its owner and
// this process's user may read or write. Its message names the mode, who has
// access and the command that takes it away.
type ModeError struct {
	Path string
	Mode fs.FileMode // permission bits, as stat shows them

	acl    bool    // the access comes from a POSIX ACL; Mode's group bits are its mask
	others []entry // who has access besides the owner and this process
}

// entry is one holder of access: an ACL entry, or the mode's group or
// others class (id -1).
type entry struct {
	class byte // 'u', 'g' or 'o', as setfacl writes them
	id    int64
}

func (e entry) String() string {
	switch {
	case e.class == 'o':
		return "others"
	case e.id < 0:
		return "its group"
	case e.class == 'u':
		return "user " + strconv.FormatInt(e.id, 10)
	}
	return "group " + strconv.FormatInt(e.id, 10)
}

// spec is the entry as setfacl -m takes it, with no permissions.
func (e entry) spec() string {
	if e.id < 0 {
		return string(e.class) + "::-"
	}
	return string(e.class) + ":" + strconv.FormatInt(e.id, 10) + ":-"
}

func (e *ModeError) Error() string {
	who := make([]string, len(e.others))
	specs := make([]string, len(e.others))
	for i, o := range e.others {
		who[i], specs[i] = o.String(), o.spec()
	}
	if e.acl {
		return fmt.Sprintf("%s is open to %s through its ACL (mode %04o; getfacl %s shows it); a secret file must be accessible only to its owner and the daemon: run setfacl -m %s %s",
			e.Path, strings.Join(who, ", "), uint32(e.Mode), e.Path, strings.Join(specs, ","), e.Path)
	}
	return fmt.Sprintf("permissions %04o for %s are too open: %s may read or write it; a secret file must be accessible only to its owner: run chmod 600 %s",
		uint32(e.Mode), e.Path, strings.Join(who, " and "), e.Path)
}

// CheckMode returns a *ModeError when the file at path may be read or
// written by anyone but its owner and this process's effective user, as
// ssh refuses an "UNPROTECTED PRIVATE KEY FILE"; nil when only they may
// (mode 0600, 0400); or the error of stat. The mode's execute bits are
// ignored. On Linux a POSIX ACL is read too: systemd hands a credential
// ($CREDENTIALS_DIRECTORY/grantwatch.key) to a DynamicUser as a root-owned
// 0400 file with an ACL entry for that user, which stat shows as 0440 (the
// ACL mask); that file passes, and another user's or group's ACL entry
// does not.
//
// The caller decides what a *ModeError means: for the sealing key, refuse to
// start (anyone who can read it can unseal every token, and anyone who can
// write it can substitute a key they know); for other secret files, log a
// warning once and have doctor show it.
func CheckMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("check mode of secret file: %w", err)
	}
	perm := fi.Mode().Perm()
	others, acl, err := aclAccess(path, uint32(os.Geteuid()))
	if err != nil {
		return fmt.Errorf("check ACL of secret file %s: %w", path, err)
	}
	if !acl {
		if perm&0o060 != 0 {
			others = append(others, entry{'g', -1})
		}
		if perm&0o006 != 0 {
			others = append(others, entry{'o', -1})
		}
	}
	if len(others) == 0 {
		return nil
	}
	return &ModeError{Path: path, Mode: perm, acl: acl, others: others}
}
