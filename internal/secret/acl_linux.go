package secret

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// The POSIX ACL as Linux stores it in the system.posix_acl_access extended
// attribute (include/uapi/linux/posix_acl_xattr.h): a little-endian version
// 2 header, then entries of tag, permissions and id.
const (
	aclXattr    = "system.posix_acl_access"
	aclVersion  = 2
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclRW       = 0o6 // read and write; execute does not matter for a secret
)

// aclAccess returns who, besides the file's owner and uid self, its ACL lets
// read or write; acl is false when the file has no extended ACL (or the file
// system has none), and then the mode says it all.
func aclAccess(path string, self uint32) (others []entry, acl bool, err error) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, aclXattr, buf)
	if errors.Is(err, syscall.ERANGE) {
		if n, err = syscall.Getxattr(path, aclXattr, nil); err == nil {
			buf = make([]byte, n)
			n, err = syscall.Getxattr(path, aclXattr, buf)
		}
	}
	switch {
	case errors.Is(err, syscall.ENODATA), errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EOPNOTSUPP):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	buf = buf[:n]
	if len(buf) < 4 || binary.LittleEndian.Uint32(buf) != aclVersion || (len(buf)-4)%8 != 0 {
		return nil, false, fmt.Errorf("%s: unknown format (%d bytes)", aclXattr, len(buf))
	}
	mask := uint16(0o7)
	type raw struct {
		tag, perm uint16
		id        uint32
	}
	var entries []raw
	for b := buf[4:]; len(b) > 0; b = b[8:] {
		e := raw{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])}
		if e.tag == aclMask {
			mask = e.perm
		}
		entries = append(entries, e)
	}
	for _, e := range entries {
		switch {
		case e.tag == aclUser && e.id != self && e.perm&mask&aclRW != 0:
			others = append(others, entry{'u', int64(e.id)})
		case e.tag == aclGroupObj && e.perm&mask&aclRW != 0:
			others = append(others, entry{'g', -1})
		case e.tag == aclGroup && e.perm&mask&aclRW != 0:
			others = append(others, entry{'g', int64(e.id)})
		case e.tag == aclOther && e.perm&aclRW != 0:
			others = append(others, entry{'o', -1})
		}
	}
	return others, true, nil
}
