package secret

import (
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const aclUndefinedID = 0xffffffff

// setACL gives path an extended ACL: owner read, the given named users and
// group class permissions, mask read, others none, in the kernel's order.
func setACL(t *testing.T, path string, groupObj uint16, users ...uint32) {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	add := func(tag, perm uint16, id uint32) {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	add(0x01, 0o4, aclUndefinedID) // ACL_USER_OBJ
	for _, u := range users {
		add(aclUser, 0o4, u)
	}
	add(aclGroupObj, groupObj, aclUndefinedID)
	add(aclMask, 0o4, aclUndefinedID)
	add(aclOther, 0, aclUndefinedID)
	if err := syscall.Setxattr(path, aclXattr, b, 0); err != nil {
		if errors.Is(err, syscall.ENOTSUP) {
			t.Skipf("no POSIX ACLs on the file system of %s", path)
		}
		t.Fatal(err)
	}
}

// systemd's LoadCredential= file: root-owned 0400 plus an ACL entry for the
// service's user, which stat shows as 0440. It must pass, or the daemon
// would refuse its own credential.
func TestCheckModeSystemdCredential(t *testing.T) {
	path := writeSecret(t, 0o400)
	setACL(t, path, 0, uint32(os.Geteuid()))
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o440 {
		t.Fatalf("stat after setfacl: %v, %v; want mode 0440 (the ACL mask in the group bits)", fi.Mode(), err)
	}
	if err := CheckMode(path); err != nil {
		t.Fatalf("CheckMode(credential) = %v, want nil", err)
	}
}

func TestCheckModeACL(t *testing.T) {
	other := uint32(os.Geteuid()) + 4242
	id := strconv.FormatUint(uint64(other), 10)
	tests := []struct {
		name     string
		groupObj uint16
		users    []uint32
		want     []string
	}{
		{"another user's entry", 0, []uint32{other}, []string{"is open to user " + id + " through its ACL", "run setfacl -m u:" + id + ":- "}},
		{"the owning group through the mask", 0o4, []uint32{uint32(os.Geteuid())}, []string{"is open to its group", "setfacl -m g::- "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeSecret(t, 0o400)
			setACL(t, path, tt.groupObj, tt.users...)
			err := CheckMode(path)
			var me *ModeError
			if !errors.As(err, &me) {
				t.Fatalf("CheckMode = %v, want a *ModeError", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("error %q advises chmod 600, which would cut the daemon's own ACL entry", err)
			}
		})
	}
}
